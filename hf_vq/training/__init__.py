"""Training: the shared loop (`loop.py`: a [`Task`] plugged into Accelerate; one guarded step in `step.py`) and the
tokenizer task behind `hf-vq train` (`tokenizer.py`), their arguments (`arguments.py`), checkpoints
(`checkpointing.py`) and the kill-safe final save (`output.py`).

    from hf_vq.training import parse_args, train
    train(parse_args(["--max-train-steps", "100", "--output-dir", "outputs/demo"]))
"""

from .arguments import LoopArguments, TrainArguments, parse_args
from .loop import Run, Task, TaskStep, Trainable, TrainData, run_training
from .tokenizer import TokenizerTask, main, train
from .tokenizer_types import TOKENIZER_TYPES, TokenizerType

__all__ = [
    "TOKENIZER_TYPES",
    "LoopArguments",
    "Run",
    "Task",
    "TaskStep",
    "TokenizerTask",
    "TokenizerType",
    "TrainArguments",
    "TrainData",
    "Trainable",
    "main",
    "parse_args",
    "run_training",
    "train",
]
