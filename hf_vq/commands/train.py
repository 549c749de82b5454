"""`hf-vq train`: train or fine-tune an image tokenizer (`hf_vq.training.tokenizer`, arguments in
`hf_vq.training.tokenizer_arguments`). Run again into the default output folder, it continues an unfinished run,
starts again in the folder of one stopped before its first checkpoint, or moves on to a new folder
([`repeat_main_job`]), and says which on stderr.

    hf-vq train                                  the main job: built-in photos, offline, a few minutes on a CPU
    accelerate launch --multi_gpu -m hf_vq.cli train --config run.yaml
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import types
from pathlib import Path

from ..training.checkpointing import check_same_configs, list_checkpoints
from ..training.output import holds_final_model
from ..training.tokenizer import new_model_config, train
from ..training.tokenizer_arguments import TrainArguments, parse_train_args
from ..training.tokenizer_types import TOKENIZER_TYPES


def repeat_main_job(args: TrainArguments) -> tuple[TrainArguments, str | None]:
    """What `hf-vq train` does when run again into the default `--output-dir` (no `--resume-from-checkpoint`, no
    `--overwrite-output-dir`). It looks at the default folder and its numbered successors (`outputs/hf-vq-train-2`,
    ...) in order and takes the first that is
    - an unfinished run whose model config is this run's: it continues it from its last checkpoint;
    - an interrupted run's folder that holds nothing finished (no checkpoint, no model): it starts again there;
    and otherwise (each is finished, or another model's) writes to the next free folder. Nothing is ever deleted.

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
    config = None  # this run's model config, built when there is a checkpoint to compare it with
    reasons = []
    for number in itertools.count(1):
        folder = Path(default if number == 1 else f"{default}-{number}")
        if not folder.exists():
            break
        checkpoints, finished = list_checkpoints(folder), holds_final_model(folder)
        if not checkpoints and not finished:
            if number == 1:
                return args, None  # a first run, or one stopped before its first checkpoint: nothing to decide
            message = f"{folder} holds a run stopped before its first checkpoint: this run starts again there."
            return dataclasses.replace(args, output_dir=str(folder)), message
        if not finished and args.init_from is None:
            config = config or new_model_config(TOKENIZER_TYPES[args.model_type], args)
            try:
                check_same_configs(checkpoints[-1], {"model": types.SimpleNamespace(config=config)})
            except ValueError:
                pass  # another model: it moves on, below
            else:
                message = (
                    f"{folder} holds an unfinished run of the same model: continuing it from {checkpoints[-1].name}. "
                    "(Start afresh instead: --overwrite-output-dir.)"
                )
                return dataclasses.replace(args, output_dir=str(folder), resume_from_checkpoint="latest"), message
        reasons.append("a finished run" if finished else "an unfinished run of another model")
    if not reasons:
        return args, None  # a first run: nothing to decide
    output_dir = str(folder)
    if len(reasons) == 1:
        message = f"{default} holds {reasons[0]}: this run writes to {output_dir} and leaves it as it is."
    else:
        message = f"{default} to {default}-{len(reasons)} hold earlier runs: this run writes to {output_dir}."
    how = (
        "--resume-from-checkpoint latest --max-train-steps N"
        if reasons[0] == "a finished run"
        else ("--resume-from-checkpoint latest")
    )
    message += f" (Replace {default}: --overwrite-output-dir; train it further: {how}.)"
    return dataclasses.replace(args, output_dir=output_dir), message


def main(argv: list[str] | None = None) -> int:
    """`hf-vq train ARGS`. Returns 0, or 1 if the run was stopped by non-finite losses. Errors propagate: `hf_vq.cli`
    turns them into one-paragraph messages."""
    args, message = repeat_main_job(parse_train_args(argv))
    if message is not None:
        print(f"hf-vq train: {message}", file=sys.stderr)
    return train(args)
