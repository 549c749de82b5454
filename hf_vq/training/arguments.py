"""Arguments of the trainers: the machinery that reads groups of flags from the command line and from a YAML/JSON
file, and the shared loop's groups.

`hf-vq train --config run.yaml --learning-rate 1e-4` reads `run.yaml` first, then lets every flag given on the
command line override it. Keys are the field names (`learning_rate` or `learning-rate`); an unknown key or an invalid
value stops the run with a message that names the flag.

Flags come in groups, one dataclass each, shown together by `--help`. The generic ones, read by the shared loop
(`loop.py`), are here: [`OptimizationArguments`] and [`OutputArguments`]; together they are [`LoopArguments`], what
any trainer builds on. Each trainer adds its own groups in its own module (`tokenizer_arguments.py` for `hf-vq train`,
`prior_arguments.py` for `hf-vq train-prior`) with the public helpers below: [`arg`] declares a flag, [`Arguments`]
is the base of a group (each group validates its own fields in `_validate`), [`check`] and [`flag_error`] word the
errors. [`parse_args`] parses any such class; nothing here knows a trainer.
"""

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from transformers import HfArgumentParser

from ..parsing import hide_underscore_spellings, unknown_argument_message

# `transformers.get_scheduler` names we accept; all of them do a linear warm-up first.
LR_SCHEDULERS = ("constant_with_warmup", "cosine", "linear", "cosine_with_restarts", "polynomial")


def arg(default: Any, help: str, **kwargs: Any) -> Any:
    """A flag of an argument group: a dataclass field with its `--help` text.

    Args:
        default (`Any`):
            The value when the flag is not given (`None`: unset, resolved by the trainer).
        help (`str`):
            What `--help` says about it.
        kwargs:
            More `argparse.add_argument` options, e.g. `choices`.
    """
    return field(default=default, metadata={"help": help, **kwargs})


class Arguments:
    """The base of every argument group (a `@dataclass` with an `_argument_group_name`, its `--help` section): on
    the assembled dataclass, runs the type check, then every group's `_validate`."""

    def __post_init__(self) -> None:
        _check_types(self)
        for name, choices in _literal_fields(type(self)).items():
            if getattr(self, name) not in choices:
                raise flag_error(name, f"one of {list(choices)}", getattr(self, name))
        for cls in reversed(type(self).__mro__):
            if "_validate" in vars(cls):
                cls._validate(self)

    @classmethod
    def argument_groups(cls) -> list[type]:
        """The flag groups this dataclass is made of, in `--help` order. A group that another group subclasses (the
        same flags with a trainer's defaults, e.g. `TokenizerOptimizationArguments`) is replaced by it."""
        groups = [c for c in reversed(cls.__mro__) if "_argument_group_name" in vars(c)]
        return [g for g in groups if not any(other is not g and issubclass(other, g) for other in groups)]


A = TypeVar("A", bound=Arguments)


def check(args: Any, names: tuple[str, ...], expected: str, ok: Callable[[Any], bool]) -> None:
    """Raises [`flag_error`] for the first of the fields `names` of `args` that is set and fails `ok`.

    Args:
        args (`Arguments`):
            The arguments being validated.
        names (`tuple[str, ...]`):
            Field names; unset (`None`) fields pass.
        expected (`str`):
            What a valid value is, for the message ("an integer >= 1").
        ok (`Callable[[Any], bool]`):
            The test of a value.
    """
    for name in names:
        value = getattr(args, name)
        if value is not None and not ok(value):
            raise flag_error(name, expected, value)


# ----------------------------------------------------------------------------------------------------------
# Generic: every trainer's loop reads these.


@dataclass
class OptimizationArguments(Arguments):
    """Batches, the step budget, AdamW and its schedule, precision, EMA, the seed."""

    _argument_group_name = "optimisation"

    train_batch_size: int = arg(8, "Images per process and per forward pass.")
    gradient_accumulation_steps: int = arg(1, "Forward/backward passes summed into one optimizer step.")
    max_train_steps: int | None = arg(
        None, "Optimizer steps to run. Unset: `num_train_epochs` over a dataset of known size, else 400."
    )
    num_train_epochs: float | None = arg(
        None, "Passes over the training split; needs a dataset whose size is known. Ignored if max_train_steps is set."
    )
    learning_rate: float = arg(4e-4, "Learning rate of the model (the generator), per total batch if --scale-lr.")
    scale_lr: bool = arg(
        False, "Multiply the learning rates by train_batch_size * gradient_accumulation_steps * processes."
    )
    adam_beta1: float = arg(0.5, "Adam beta1 of every optimizer (taming's VQ-GAN uses 0.5).")
    adam_beta2: float = arg(0.9, "Adam beta2 of every optimizer.")
    adam_weight_decay: float = arg(0.0, "AdamW weight decay of every optimizer.")
    adam_epsilon: float = arg(1e-8, "Adam epsilon of every optimizer.")
    lr_scheduler: Literal[LR_SCHEDULERS] = arg("cosine", "Learning-rate decay after the warm-up.")
    lr_warmup_steps: int = arg(20, "Optimizer steps of linear learning-rate warm-up.")
    max_grad_norm: float = arg(1.0, "Clip the gradient norm of each model to this value (0 disables).")
    mixed_precision: Literal["no", "fp16", "bf16"] = arg(
        "no", "Autocast precision of the forward passes; the quantizer's nearest-code search stays in fp32."
    )
    use_ema: bool = arg(True, "Keep an exponential moving average of the model's weights and save it.")
    ema_decay: float = arg(0.999, "EMA decay (warmed up as min(decay, (1 + n) / (10 + n)) after n updates).")
    seed: int = arg(0, "Seed of model init, data order, crops and every other random choice.")

    def _validate(self) -> None:
        positive = ("train_batch_size", "gradient_accumulation_steps", "max_train_steps")
        check(self, positive, "an integer >= 1", lambda v: v >= 1)
        check(self, ("lr_warmup_steps",), "an integer >= 0", lambda v: v >= 0)
        check(self, ("num_train_epochs",), "a number > 0", lambda v: v > 0)
        check(self, ("learning_rate",), "a finite number > 0", lambda v: v > 0 and math.isfinite(v))
        check(self, ("adam_beta1", "adam_beta2", "ema_decay"), "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)
        check(self, ("max_grad_norm", "adam_weight_decay"), "a number >= 0", lambda v: v >= 0)


@dataclass
class OutputArguments(Arguments):
    """The output folder, checkpoints and resuming, logging and trackers, the NaN/inf guard, the Hub."""

    _argument_group_name = "checkpoints, logging, output"

    output_dir: str = arg("outputs/hf-vq-train", "Folder for checkpoints, logs, samples and the final model.")
    overwrite_output_dir: bool = arg(
        False,
        "Start afresh even if output_dir already holds checkpoints or a model. They are removed only once every "
        "argument, config and the data were checked, when the new run starts writing.",
    )
    checkpointing_steps: int = arg(200, "Save a resumable checkpoint every this many optimizer steps (0: never).")
    checkpoints_total_limit: int | None = arg(2, "Keep only this many newest checkpoints (unset: keep all).")
    resume_from_checkpoint: str | None = arg(
        None,
        "`latest` or a checkpoint folder: continue with the same step, optimizers, EMA, data and RNG state. Nothing "
        "in it is unpickled (hf-vq's state is JSON and safetensors; optimizer, schedule and RNG files are read with "
        "torch.load(weights_only=True)); a folder owned by another user needs --trust-checkpoint.",
    )
    trust_checkpoint: bool = arg(
        False,
        "Resume from a checkpoint folder that another user owns. The threat: a checkpoint's optimizer and RNG files "
        "are pickles, and unpickling a crafted one runs its author's code. hf-vq reads them with torch's restricted "
        "unpickler (weights_only=True), so only a bug in it could be exploited; this flag is the second lock. Give "
        "it only for checkpoints whose origin you trust.",
    )
    logging_steps: int = arg(10, "Log losses and rates every this many optimizer steps.")
    report_to: Literal["tensorboard", "wandb", "all", "none"] = arg(
        "tensorboard", "Where scalars and images go: TensorBoard (under output_dir/logs), Weights & Biases, both."
    )
    tracker_project_name: str = arg("hf-vq", "Project / run-group name given to the trackers.")
    image_logging_steps: int = arg(100, "Save and log a grid of inputs vs reconstructions every this many steps.")
    eval_steps: int = arg(200, "Evaluate on held-out data (PSNR, SSIM, code usage) every this many steps.")
    max_consecutive_nonfinite: int = arg(
        5, "Stop after this many optimizer steps in a row were skipped for a NaN/inf loss or gradient."
    )
    max_empty_batches: int = arg(
        50,
        "Stop after this many batches in a row held no readable example (every record corrupt or not an image). "
        "Fewer are skipped and counted as skipped data, not as failed steps.",
    )
    push_to_hub: bool = arg(False, "Upload the final model, its discriminator, card and samples to the Hub.")
    hub_model_id: str | None = arg(None, "Repository to push to. Unset: the output folder's name.")
    hub_private_repo: bool = arg(False, "Create the Hub repository as private.")

    def _validate(self) -> None:
        non_negative = ("checkpointing_steps", "logging_steps", "image_logging_steps", "eval_steps")
        check(self, non_negative, "an integer >= 0", lambda v: v >= 0)
        at_least_one = ("checkpoints_total_limit", "max_consecutive_nonfinite", "max_empty_batches")
        check(self, at_least_one, "an integer >= 1", lambda v: v >= 1)


@dataclass
class LoopArguments(OutputArguments, OptimizationArguments):
    """What the shared loop (`loop.py`) reads; a trainer's arguments add their own groups to these two."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_error(name: str, expected: str, received: Any) -> ValueError:
    """The error of an invalid flag value: `--name must be {expected}; got {received!r}.` (raise it)."""
    return ValueError(f"{_flag(name)} must be {expected}; got {received!r}.")


def _literal_fields(arguments_class: type) -> dict[str, tuple]:
    hints = typing.get_type_hints(arguments_class)
    return {name: typing.get_args(t) for name, t in hints.items() if typing.get_origin(t) is Literal}


def _check_types(args: Any) -> None:
    """Values from a YAML/JSON file skip argparse's conversions: check each one against its annotation."""
    hints = typing.get_type_hints(type(args))
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        allowed = typing.get_args(hints[f.name]) if isinstance(hints[f.name], types.UnionType) else (hints[f.name],)
        ok = False
        for t in allowed:
            if t is type(None):
                ok |= value is None
            elif typing.get_origin(t) is Literal:
                ok |= isinstance(value, str)
            elif t is float:
                ok |= isinstance(value, (int, float)) and not isinstance(value, bool)
            elif t is int:
                ok |= isinstance(value, int) and not isinstance(value, bool)
            else:
                ok |= isinstance(value, t)
        if not ok:
            names = " or ".join("null" if t is type(None) else getattr(t, "__name__", "str") for t in allowed)
            raise flag_error(f.name, f"of type {names}", value)
        if isinstance(value, int) and not isinstance(value, bool) and float in allowed:
            setattr(args, f.name, float(value))


def _read_config_file(path: str, arguments_class: type, prog: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--config {path!r}: no such file.")
    text = file.read_text()
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    elif file.suffix.lower() == ".json":
        values = json.loads(text)
    else:
        raise ValueError(f"--config {path!r}: expected a .yaml, .yml or .json file.")
    if not isinstance(values, dict):
        kind = type(values).__name__
        raise ValueError(f"--config {path!r}: expected a mapping of argument names to values, got {kind}.")
    known = {f.name for f in dataclasses.fields(arguments_class)}
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else f" Run `{prog} --help` for the list."
            raise ValueError(f"--config {path!r}: unknown key `{key}`.{hint}")
        if name.endswith("_config") and isinstance(value, dict):
            value = json.dumps(value)  # a mapping in the file is the same as inline JSON on the command line
        out[name] = value
    return out


def build_parser(arguments_class: type[Arguments], prog: str, description: str) -> HfArgumentParser:
    """The parser of `arguments_class`: one `--help` section per flag group, plus `--config FILE`.

    Args:
        arguments_class (`type[Arguments]`):
            A trainer's arguments: a dataclass made of argument groups (e.g. `tokenizer_arguments.TrainArguments`).
        prog (`str`):
            The command, for the usage line and the messages (`"hf-vq train"`).
        description (`str`):
            What the command does, for `--help`.
    """
    parser = HfArgumentParser(
        arguments_class.argument_groups(),
        prog=prog,
        description=description,
        allow_abbrev=False,
        usage=f"{prog} [--config FILE] [--FLAG VALUE ...]  ({prog} --help lists every flag)",
    )
    text = "YAML or JSON file of arguments; command-line flags override it."
    parser.add_argument("--config", metavar="FILE", default=None, help=text)
    hide_underscore_spellings(parser)
    return parser


def parse_args(argv: list[str] | None, arguments_class: type[A], prog: str, description: str) -> A:
    """Parses `argv` (flags and an optional `--config FILE`) into `arguments_class`. Each trainer wraps it with its
    own class (`tokenizer_arguments.parse_train_args`, `prior_arguments.parse_prior_args`).

    Exits with status 2 and a message naming the flag or key on an unknown or invalid value, as argparse does.

    Args:
        argv (`list[str]`, *optional*):
            The flags; `None` reads `sys.argv[1:]`.
        arguments_class (`type[Arguments]`):
            A trainer's arguments: a dataclass made of argument groups.
        prog (`str`):
            The command, for the usage line and the messages (`"hf-vq train"`).
        description (`str`):
            What the command does, for `--help`.
    """
    parser = build_parser(arguments_class, prog=prog, description=description)
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(unknown_argument_message(parser, unknown[0]))
    try:
        if namespace.config is not None:
            parser.set_defaults(**_read_config_file(namespace.config, arguments_class, prog))
            namespace, _ = parser.parse_known_args(argv)  # file values become defaults: the command line wins
        values = {k: v for k, v in vars(namespace).items() if k != "config"}
        return arguments_class(**values)
    except ValueError as error:
        parser.error(str(error))


def resolve_max_train_steps(args: OptimizationArguments, num_train_examples: int | None, num_processes: int) -> int:
    """The step budget, fixed before the optimizers, schedules and checkpoints that depend on it are built.

    `max_train_steps` wins; else `num_train_epochs` over a split of known size; else 400 (the main job).
    """
    if args.max_train_steps is not None:
        return args.max_train_steps
    if args.num_train_epochs is None:
        return 400
    if not num_train_examples:
        raise ValueError(
            "--num-train-epochs needs the size of the training split, which this streaming dataset does not report; "
            "give --max-train-steps instead."
        )
    images_per_step = args.train_batch_size * args.gradient_accumulation_steps * num_processes
    return max(1, math.ceil(args.num_train_epochs * num_train_examples / images_per_step))


def parse_json_or_file(value: str, flag: str) -> dict[str, Any]:
    """`--model-config` / `--discriminator-config`: inline JSON, or a path to a JSON file (a config.json)."""
    text = value.strip()
    if not text.startswith("{"):
        path = Path(value)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ValueError(f"{flag} {value!r}: neither inline JSON nor an existing config file.")
        text = path.read_text()
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag}: invalid JSON ({error}).") from None
    if not isinstance(values, dict):
        raise ValueError(f"{flag}: expected a JSON object of config fields.")
    return values


__all__ = [
    "Arguments",
    "LoopArguments",
    "OptimizationArguments",
    "OutputArguments",
    "arg",
    "build_parser",
    "check",
    "flag_error",
    "parse_args",
    "parse_json_or_file",
    "resolve_max_train_steps",
]
