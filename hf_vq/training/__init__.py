"""Training: the shared loop (`loop.py`: a [`Task`] (`task.py`) plugged into Accelerate; one guarded step in
`step.py`) and the tokenizer task behind `hf-vq train` (`tokenizer.py`), the argument machinery and the loop's flags
(`arguments.py`), the tokenizer's flags (`tokenizer_arguments.py`), checkpoints (`checkpointing.py`) and the kill-safe
final save (`output.py`).

    from hf_vq.training import parse_args, train
    train(parse_args(["--max-train-steps", "100", "--output-dir", "outputs/demo"]))
"""

from .arguments import LoopArguments
from .loop import run_training
from .prior_types import PRIOR_TYPES, PriorType
from .task import Run, Task, TaskStep, Trainable, TrainData
from .tokenizer import TokenizerTask, train
from .tokenizer_arguments import TrainArguments, parse_train_args
from .tokenizer_types import TOKENIZER_TYPES, TokenizerType

# `train(parse_args([...]))`: `hf-vq train`'s parser under the name the package has always exported.
parse_args = parse_train_args

__all__ = [
    "PRIOR_TYPES",
    "TOKENIZER_TYPES",
    "LoopArguments",
    "PriorType",
    "Run",
    "Task",
    "TaskStep",
    "TokenizerTask",
    "TokenizerType",
    "TrainArguments",
    "TrainData",
    "Trainable",
    "parse_args",
    "parse_train_args",
    "run_training",
    "train",
]
