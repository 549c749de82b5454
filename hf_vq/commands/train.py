"""`hf-vq train`: train or fine-tune an image tokenizer (`hf_vq.training.tokenizer`, arguments in
`hf_vq.training.tokenizer_arguments`). Run again into the default output folder, it continues the earlier run or
moves aside to a new folder ([`repeat_main_job`]) and says which on stderr.

    hf-vq train                                  the main job: built-in photos, offline, a few minutes on a CPU
    accelerate launch --multi_gpu -m hf_vq.cli train --config run.yaml
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

from ..training.checkpointing import check_same_configs, list_checkpoints
from ..training.tokenizer import new_model_config, train
from ..training.tokenizer_arguments import TrainArguments, parse_train_args
from ..training.tokenizer_types import TOKENIZER_TYPES


def repeat_main_job(args: TrainArguments) -> tuple[TrainArguments, str | None]:
    """What `hf-vq train` does when run again into the default `--output-dir` (no `--resume-from-checkpoint`, no
    `--overwrite-output-dir`): it continues the earlier run when that run is unfinished and its model config is this
    run's; otherwise (finished, or another model) it writes to the next free folder, `outputs/hf-vq-train-2`, ...
    Nothing is ever deleted.

    Args:
        args (`TrainArguments`):
            The parsed arguments; left as they are.

    Returns:
        `tuple`: the arguments to run with (`args` itself, or a `dataclasses.replace`d copy with `output_dir` or
        `resume_from_checkpoint` set), and what was decided, for the user (`None` when nothing was).
    """
    default = next(f.default for f in dataclasses.fields(args) if f.name == "output_dir")
    if args.output_dir != default or args.resume_from_checkpoint is not None or args.overwrite_output_dir:
        return args, None
    folder = Path(default)
    checkpoints = list_checkpoints(folder)
    finished = any((folder / name).is_file() for name in ("config.json", "model_index.json"))
    if not checkpoints and not finished:
        return args, None
    if not finished and args.init_from is None:
        config = new_model_config(TOKENIZER_TYPES[args.model_type], args)
        try:
            check_same_configs(checkpoints[-1], {"model": types.SimpleNamespace(config=config)})
        except ValueError:
            pass  # another model: it moves aside, below
        else:
            message = (
                f"{folder} holds an unfinished run of the same model: continuing it from {checkpoints[-1].name}. "
                "(Start afresh instead: --overwrite-output-dir.)"
            )
            return dataclasses.replace(args, resume_from_checkpoint="latest"), message
    number = 2
    while Path(f"{default}-{number}").exists():
        number += 1
    output_dir = f"{default}-{number}"
    why = "a finished run" if finished else "an unfinished run of another model"
    how = "--resume-from-checkpoint latest --max-train-steps N" if finished else "--resume-from-checkpoint latest"
    message = (
        f"{folder} holds {why}: this run writes to {output_dir} and leaves it as it is. (Replace it: "
        f"--overwrite-output-dir; train it further: {how}.)"
    )
    return dataclasses.replace(args, output_dir=output_dir), message


def main(argv: list[str] | None = None) -> int:
    """`hf-vq train ARGS`. Returns 0, or 1 if the run was stopped by non-finite losses. Errors propagate: `hf_vq.cli`
    turns them into one-paragraph messages."""
    args, message = repeat_main_job(parse_train_args(argv))
    if message is not None:
        print(f"hf-vq train: {message}", file=sys.stderr)
    return train(args)
