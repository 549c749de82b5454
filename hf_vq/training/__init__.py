"""Training and fine-tuning: `hf-vq train` (see `train.py`), its arguments and its `datasets` streaming input.

    from hf_vq.training import parse_args, train
    train(parse_args(["--max-train-steps", "100", "--output-dir", "outputs/demo"]))
"""

from .arguments import TrainArguments, parse_args
from .train import main, train

__all__ = ["TrainArguments", "main", "parse_args", "train"]
