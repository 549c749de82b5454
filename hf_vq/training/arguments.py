"""Arguments of the trainers: groups of flags, read from the command line and from a YAML/JSON file.

`hf-vq train --config run.yaml --learning-rate 1e-4` reads `run.yaml` first, then lets every flag given on the
command line override it. Keys are the field names below (`learning_rate` or `learning-rate`); an unknown key
or an invalid value stops the run with a message that names the flag.

Flags come in groups, one dataclass each, shown together by `--help`:

- generic, read by the shared loop (`loop.py`): [`OptimizationArguments`], [`OutputArguments`]; together they are
  [`LoopArguments`], what any trainer builds on;
- the tokenizer's (`tokenizer.py`): [`TokenizerModelArguments`], [`ImageDataArguments`], [`AdversarialArguments`].

[`TrainArguments`], `hf-vq train`'s, is the flat union of all five. Each group validates its own fields
(`_validate`). `--model-type` reads the open registry [`TOKENIZER_TYPES`]: a new tokenizer is one entry there.
"""

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import HfArgumentParser

from ..parsing import hide_underscore_spellings, unknown_argument_message
from .tokenizer_types import TOKENIZER_TYPES

# `transformers.get_scheduler` names we accept; all of them do a linear warm-up first.
LR_SCHEDULERS = ("constant_with_warmup", "cosine", "linear", "cosine_with_restarts", "polynomial")


def _arg(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, **kwargs})


class _Arguments:
    """Runs the type check, then every group's `_validate`, on the assembled dataclass."""

    def __post_init__(self) -> None:
        _check_types(self)
        for name, choices in _literal_fields(type(self)).items():
            if getattr(self, name) not in choices:
                raise _flag_error(name, f"one of {list(choices)}", getattr(self, name))
        for cls in reversed(type(self).__mro__):
            if "_validate" in vars(cls):
                cls._validate(self)

    @classmethod
    def argument_groups(cls) -> list[type]:
        """The flag groups this dataclass is made of, in `--help` order. A group that another group subclasses (the
        same flags with a trainer's defaults, e.g. `TokenizerOptimizationArguments`) is replaced by it."""
        groups = [c for c in reversed(cls.__mro__) if "_argument_group_name" in vars(c)]
        return [g for g in groups if not any(other is not g and issubclass(other, g) for other in groups)]


def _check(args: Any, names: tuple[str, ...], expected: str, ok) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and not ok(value):
            raise _flag_error(name, expected, value)


# ----------------------------------------------------------------------------------------------------------
# Generic: every trainer's loop reads these.


@dataclass
class OptimizationArguments(_Arguments):
    """Batches, the step budget, AdamW and its schedule, precision, EMA, the seed."""

    _argument_group_name = "optimisation"

    train_batch_size: int = _arg(8, "Images per process and per forward pass.")
    gradient_accumulation_steps: int = _arg(1, "Forward/backward passes summed into one optimizer step.")
    max_train_steps: int | None = _arg(
        None, "Optimizer steps to run. Unset: `num_train_epochs` over a dataset of known size, else 400."
    )
    num_train_epochs: float | None = _arg(
        None, "Passes over the training split; needs a dataset whose size is known. Ignored if max_train_steps is set."
    )
    learning_rate: float = _arg(4e-4, "Learning rate of the model (the generator), per total batch if --scale-lr.")
    scale_lr: bool = _arg(
        False, "Multiply the learning rates by train_batch_size * gradient_accumulation_steps * processes."
    )
    adam_beta1: float = _arg(0.5, "Adam beta1 of every optimizer (taming's VQ-GAN uses 0.5).")
    adam_beta2: float = _arg(0.9, "Adam beta2 of every optimizer.")
    adam_weight_decay: float = _arg(0.0, "AdamW weight decay of every optimizer.")
    adam_epsilon: float = _arg(1e-8, "Adam epsilon of every optimizer.")
    lr_scheduler: Literal[LR_SCHEDULERS] = _arg("cosine", "Learning-rate decay after the warm-up.")
    lr_warmup_steps: int = _arg(20, "Optimizer steps of linear learning-rate warm-up.")
    max_grad_norm: float = _arg(1.0, "Clip the gradient norm of each model to this value (0 disables).")
    mixed_precision: Literal["no", "fp16", "bf16"] = _arg(
        "no", "Autocast precision of the forward passes; the quantizer's nearest-code search stays in fp32."
    )
    use_ema: bool = _arg(True, "Keep an exponential moving average of the model's weights and save it.")
    ema_decay: float = _arg(0.999, "EMA decay (warmed up as min(decay, (1 + n) / (10 + n)) after n updates).")
    seed: int = _arg(0, "Seed of model init, data order, crops and every other random choice.")

    def _validate(self) -> None:
        positive = ("train_batch_size", "gradient_accumulation_steps", "max_train_steps")
        _check(self, positive, "an integer >= 1", lambda v: v >= 1)
        _check(self, ("lr_warmup_steps",), "an integer >= 0", lambda v: v >= 0)
        _check(self, ("num_train_epochs",), "a number > 0", lambda v: v > 0)
        _check(self, ("learning_rate",), "a finite number > 0", lambda v: v > 0 and math.isfinite(v))
        _check(self, ("adam_beta1", "adam_beta2", "ema_decay"), "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)
        _check(self, ("max_grad_norm", "adam_weight_decay"), "a number >= 0", lambda v: v >= 0)


@dataclass
class OutputArguments(_Arguments):
    """The output folder, checkpoints and resuming, logging and trackers, the NaN/inf guard, the Hub."""

    _argument_group_name = "checkpoints, logging, output"

    output_dir: str = _arg("outputs/hf-vq-train", "Folder for checkpoints, logs, samples and the final model.")
    overwrite_output_dir: bool = _arg(
        False,
        "Start afresh even if output_dir already holds checkpoints or a model. They are removed only once every "
        "argument, config and the data were checked, when the new run starts writing.",
    )
    checkpointing_steps: int = _arg(200, "Save a resumable checkpoint every this many optimizer steps (0: never).")
    checkpoints_total_limit: int | None = _arg(2, "Keep only this many newest checkpoints (unset: keep all).")
    resume_from_checkpoint: str | None = _arg(
        None,
        "`latest` or a checkpoint folder: continue with the same step, optimizers, EMA, data and RNG state. Nothing "
        "in it is unpickled (hf-vq's state is JSON and safetensors; optimizer, schedule and RNG files are read with "
        "torch.load(weights_only=True)); a folder owned by another user needs --trust-checkpoint.",
    )
    trust_checkpoint: bool = _arg(
        False,
        "Resume from a checkpoint folder that another user owns. The threat: a checkpoint's optimizer and RNG files "
        "are pickles, and unpickling a crafted one runs its author's code. hf-vq reads them with torch's restricted "
        "unpickler (weights_only=True), so only a bug in it could be exploited; this flag is the second lock. Give "
        "it only for checkpoints whose origin you trust.",
    )
    logging_steps: int = _arg(10, "Log losses and rates every this many optimizer steps.")
    report_to: Literal["tensorboard", "wandb", "all", "none"] = _arg(
        "tensorboard", "Where scalars and images go: TensorBoard (under output_dir/logs), Weights & Biases, both."
    )
    tracker_project_name: str = _arg("hf-vq", "Project / run-group name given to the trackers.")
    image_logging_steps: int = _arg(100, "Save and log a grid of inputs vs reconstructions every this many steps.")
    eval_steps: int = _arg(200, "Evaluate on held-out data (PSNR, SSIM, code usage) every this many steps.")
    max_consecutive_nonfinite: int = _arg(
        5, "Stop after this many optimizer steps in a row were skipped for a NaN/inf loss or gradient."
    )
    max_empty_batches: int = _arg(
        50,
        "Stop after this many batches in a row held no readable example (every record corrupt or not an image). "
        "Fewer are skipped and counted as skipped data, not as failed steps.",
    )
    push_to_hub: bool = _arg(False, "Upload the final model, its discriminator, card and samples to the Hub.")
    hub_model_id: str | None = _arg(None, "Repository to push to. Unset: the output folder's name.")
    hub_private_repo: bool = _arg(False, "Create the Hub repository as private.")

    def _validate(self) -> None:
        non_negative = ("checkpointing_steps", "logging_steps", "image_logging_steps", "eval_steps")
        _check(self, non_negative, "an integer >= 0", lambda v: v >= 0)
        at_least_one = ("checkpoints_total_limit", "max_consecutive_nonfinite", "max_empty_batches")
        _check(self, at_least_one, "an integer >= 1", lambda v: v >= 1)


@dataclass
class LoopArguments(OutputArguments, OptimizationArguments):
    """What the shared loop (`loop.py`) reads; a trainer's arguments add their own groups to these two."""


# ----------------------------------------------------------------------------------------------------------
# The tokenizer's: `hf-vq train`.


@dataclass
class TokenizerModelArguments(_Arguments):
    """Which tokenizer: a registered type from scratch, or a saved one to fine-tune; what to freeze."""

    _argument_group_name = "model"

    model_type: str = _arg(
        "vqgan",
        "Tokenizer to train from scratch: `vqgan` (taming/latent-diffusion autoencoder + GAN) or `vqvae` "
        "(any key of hf_vq.training.arguments.TOKENIZER_TYPES).",
        choices=TOKENIZER_TYPES,  # the dict itself: argparse checks membership, so entries added later count
    )
    model_config: str | None = _arg(
        None,
        "Fields to change in the main job's small --model-type config (sized for a CPU; sample_size from "
        "--resolution): an inline JSON object, a JSON file, or (in a --config file) a mapping. Every field not given "
        "keeps the main job's default, e.g. '{\"num_vq_embeddings\": 4096}'. A config.json written by "
        "save_pretrained (it names its model_type) is taken whole.",
    )
    init_from: str | None = _arg(
        None,
        "Fine-tune instead of training from scratch: a Hub model id or a local folder written by save_pretrained. "
        "Its `discriminator/` subfolder is loaded too when present.",
    )
    freeze_encoder: bool = _arg(False, "Do not train the encoder and quant_conv (decoder-only fine-tuning).")
    freeze_codebook: bool = _arg(
        False, "Do not train the codebook, so the token ids of existing data stay valid (decoder-only fine-tuning)."
    )
    gradient_checkpointing: bool = _arg(False, "Recompute activations in the backward pass to save memory.")

    def _validate(self) -> None:
        if self.model_type not in TOKENIZER_TYPES:
            raise _flag_error("model_type", f"one of {list(TOKENIZER_TYPES)}", self.model_type)
        if self.model_config is not None and self.init_from is not None:
            raise ValueError(
                "--model-config and --init-from both describe the model; give one: --init-from loads the config "
                "saved with the weights."
            )


@dataclass
class ImageDataArguments(_Arguments):
    """Training and held-out images: where from, at what size, how they are streamed."""

    _argument_group_name = "data"

    dataset_name: str | None = _arg(
        None,
        "Training images: a Hub dataset id, a local image folder, or parquet / webdataset (.tar) shards (a folder "
        "or a glob). Unset: random crops of the photos bundled with scikit-image, scikit-learn and matplotlib.",
    )
    dataset_config_name: str | None = _arg(None, "Configuration (subset) of the Hub dataset.")
    train_split: str = _arg("train", "Split to train on.")
    eval_split: str | None = _arg(
        None, "Split of held-out images for evaluation. Unset: `validation` or `test` when the dataset has one."
    )
    image_column: str | None = _arg(None, "Column holding the images. Unset: the first column of image type.")
    resolution: int = _arg(64, "Side of the square training crops, in pixels.")
    random_flip: bool = _arg(True, "Flip training crops horizontally at random.")
    shuffle_buffer_size: int = _arg(1000, "Examples in the streaming shuffle buffer (0 disables shuffling).")
    dataloader_num_workers: int = _arg(
        2, "Data loader worker processes per training process (capped by the dataset's shard count)."
    )
    num_eval_images: int = _arg(16, "Held-out images used by each evaluation and shown in the sample grid.")

    def _validate(self) -> None:
        _check(self, ("resolution", "num_eval_images"), "an integer >= 1", lambda v: v >= 1)
        _check(self, ("shuffle_buffer_size", "dataloader_num_workers"), "an integer >= 0", lambda v: v >= 0)
        if self.resolution % 8:
            expected = "a multiple of 8 (every built-in model downsamples by up to 8)"
            raise _flag_error("resolution", expected, self.resolution)

    @property
    def uses_builtin_data(self) -> bool:
        return self.dataset_name is None


@dataclass
class AdversarialArguments(_Arguments):
    """The VQ-GAN objective (`hf_vq.losses.VQGANLossConfig`) and its discriminator; unused by `--model-type vqvae`.
    Unset values take the objective's defaults, the schedule scaled to the run (`tokenizer.build_objective`)."""

    _argument_group_name = "VQ-GAN objective (discriminator, perceptual loss, regularisers)"

    discriminator_config: str | None = _arg(
        None, "Discriminator config: a config.json path or inline JSON. Unset: the default PatchGAN."
    )
    discriminator_learning_rate: float | None = _arg(None, "Discriminator learning rate. Unset: learning_rate.")
    discriminator_start: int | None = _arg(
        None, "Optimizer step at which the GAN terms switch on. Unset: the objective's default for the run length."
    )
    discriminator_weight: float | None = _arg(None, "Weight of the adversarial term. Unset: the objective's default.")
    perceptual_weight: float | None = _arg(
        None, "Weight of the LPIPS term (0 disables it). Unset: the objective's default."
    )
    perceptual_net: Literal["vgg16", "alexnet"] = _arg(
        "alexnet",
        "Backbone of the LPIPS perceptual loss: `alexnet` (~20x cheaper, the CPU-sized default) or `vgg16` "
        "(taming's choice, for GPU training).",
    )
    lecam_weight: float | None = _arg(
        None,
        "Weight of the LeCam regulariser of the discriminator (MAGVIT-v2 uses 0.001; 0 disables it). Unset: the "
        "objective's default (off).",
    )
    lecam_ema_decay: float | None = _arg(
        None, "Decay of the LeCam anchors' moving averages of the logits. Unset: the objective's default (0.99)."
    )
    r1_weight: float | None = _arg(
        None, "Weight of the R1 gradient penalty on real images (0 disables it). Unset: the objective's default (off)."
    )

    def _validate(self) -> None:
        _check(self, ("discriminator_learning_rate",), "a finite number > 0", lambda v: v > 0 and math.isfinite(v))
        weights = ("discriminator_weight", "perceptual_weight", "lecam_weight", "r1_weight")
        _check(self, weights, "a number >= 0", lambda v: v >= 0)
        _check(self, ("discriminator_start",), "an integer >= 0", lambda v: v >= 0)
        _check(self, ("lecam_ema_decay",), "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)


@dataclass
class TokenizerOptimizationArguments(OptimizationArguments):
    """The loop's optimisation flags with the main job's defaults: a rate sized for its small model, and Adam's
    beta1 following the GAN (taming's 0.5 keeps adversarial training stable; without a GAN there is no reason for it).
    Measured at the main job's 400 steps without the GAN: lr 1e-3 with beta1 0.9 against 4e-4 with 0.5 gave +0.8 dB
    held-out PSNR and 14% lower LPIPS on one thread (README, 'What the main job gives')."""

    _argument_group_name = "optimisation"

    learning_rate: float = _arg(
        1e-3,
        "Learning rate of the model (the generator), per total batch if --scale-lr. The default suits the main job's "
        "small model; large models train at 1e-4 - 4.5e-4 (taming's f16 VQ-GAN: 4.5e-6 per image of the batch).",
    )
    adam_beta1: float | None = _arg(
        None, "Adam beta1 of every optimizer. Unset: 0.5 when the run trains a GAN (taming's VQ-GAN), else 0.9."
    )


@dataclass
class TrainArguments(
    OutputArguments, TokenizerOptimizationArguments, AdversarialArguments, ImageDataArguments, TokenizerModelArguments
):
    """Everything `hf-vq train` can be told. Run `hf-vq train --help` for the same text, by group."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_error(name: str, expected: str, received: Any) -> ValueError:
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
            raise _flag_error(f.name, f"of type {names}", value)
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


TRAIN_DESCRIPTION = (
    "Train or fine-tune a VQ-GAN / VQ-VAE image tokenizer. With no arguments: a small VQ-GAN on the photos bundled "
    "with scikit-image, scikit-learn and matplotlib, offline, in about five minutes on a CPU."
)


def build_parser(
    arguments_class: type = TrainArguments, prog: str = "hf-vq train", description: str = TRAIN_DESCRIPTION
) -> HfArgumentParser:
    """The parser of `arguments_class`: one `--help` section per flag group, plus `--config FILE`."""
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


def parse_args(
    argv: list[str] | None = None,
    arguments_class: type = TrainArguments,
    prog: str = "hf-vq train",
    description: str = TRAIN_DESCRIPTION,
) -> Any:
    """Parses `argv` (flags and an optional `--config FILE`) into `arguments_class` ([`TrainArguments`]).

    Exits with status 2 and a message naming the flag or key on an unknown or invalid value, as argparse does.
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
    "AdversarialArguments",
    "ImageDataArguments",
    "LoopArguments",
    "OptimizationArguments",
    "OutputArguments",
    "TokenizerModelArguments",
    "TokenizerOptimizationArguments",
    "TrainArguments",
    "build_parser",
    "parse_args",
    "parse_json_or_file",
    "resolve_max_train_steps",
]
