"""Arguments of `hf-vq train`: one dataclass, read from the command line and from a YAML/JSON file.

`hf-vq train --config run.yaml --learning-rate 1e-4` reads `run.yaml` first, then lets every flag given on the
command line override it. Keys are the field names below (`learning_rate` or `learning-rate`); an unknown key
or an invalid value stops the run with a message that names the flag.
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

# `transformers.get_scheduler` names we accept; all of them do a linear warm-up first.
LR_SCHEDULERS = ("constant_with_warmup", "cosine", "linear", "cosine_with_restarts", "polynomial")


def _arg(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainArguments:
    """Everything `hf-vq train` can be told. Run `hf-vq train --help` for the same text on the command line."""

    # --- model ---
    model_type: Literal["vqgan", "vqvae"] = _arg(
        "vqgan", "Architecture to train from scratch: `vqgan` (taming/latent-diffusion autoencoder + GAN) or `vqvae`."
    )
    model_config: str | None = _arg(
        None,
        "Model config: a config.json path, an inline JSON object, or (in a --config file) a mapping of fields. "
        "Unset: the small built-in config of the main job, sized for a CPU.",
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

    # --- data ---
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

    # --- optimisation ---
    train_batch_size: int = _arg(8, "Images per process and per forward pass.")
    gradient_accumulation_steps: int = _arg(1, "Forward/backward passes summed into one optimizer step.")
    max_train_steps: int | None = _arg(
        None, "Optimizer steps to run. Unset: `num_train_epochs` over a dataset of known size, else 400."
    )
    num_train_epochs: float | None = _arg(
        None, "Passes over the training split; needs a dataset whose size is known. Ignored if max_train_steps is set."
    )
    learning_rate: float = _arg(4e-4, "Generator learning rate (per total batch if --scale-lr is set).")
    discriminator_learning_rate: float | None = _arg(None, "Discriminator learning rate. Unset: learning_rate.")
    scale_lr: bool = _arg(
        False, "Multiply the learning rates by train_batch_size * gradient_accumulation_steps * processes."
    )
    adam_beta1: float = _arg(0.5, "Adam beta1 of both optimizers (taming's VQ-GAN uses 0.5).")
    adam_beta2: float = _arg(0.9, "Adam beta2 of both optimizers.")
    adam_weight_decay: float = _arg(0.0, "AdamW weight decay of both optimizers.")
    adam_epsilon: float = _arg(1e-8, "Adam epsilon of both optimizers.")
    lr_scheduler: Literal[LR_SCHEDULERS] = _arg("cosine", "Learning-rate decay after the warm-up.")
    lr_warmup_steps: int = _arg(20, "Optimizer steps of linear learning-rate warm-up.")
    max_grad_norm: float = _arg(1.0, "Clip the gradient norm of each model to this value (0 disables).")
    mixed_precision: Literal["no", "fp16", "bf16"] = _arg(
        "no", "Autocast precision of the forward passes; the quantizer's nearest-code search stays in fp32."
    )
    use_ema: bool = _arg(True, "Keep an exponential moving average of the generator's weights and save it.")
    ema_decay: float = _arg(0.999, "EMA decay (warmed up as min(decay, (1 + n) / (10 + n)) after n updates).")
    seed: int = _arg(0, "Seed of model init, data order, crops and every other random choice.")

    # --- VQ-GAN objective ---
    discriminator_config: str | None = _arg(
        None, "Discriminator config: a config.json path or inline JSON. Unset: the default PatchGAN."
    )
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

    # --- checkpoints, logging, output ---
    output_dir: str = _arg("outputs/hf-vq-train", "Folder for checkpoints, logs, samples and the final model.")
    overwrite_output_dir: bool = _arg(False, "Start afresh even if output_dir already holds checkpoints.")
    checkpointing_steps: int = _arg(200, "Save a resumable checkpoint every this many optimizer steps (0: never).")
    checkpoints_total_limit: int | None = _arg(2, "Keep only this many newest checkpoints (unset: keep all).")
    resume_from_checkpoint: str | None = _arg(
        None, "`latest` or a checkpoint folder: continue with the same step, optimizers, EMA, data and RNG state."
    )
    logging_steps: int = _arg(10, "Log losses and rates every this many optimizer steps.")
    report_to: Literal["tensorboard", "wandb", "all", "none"] = _arg(
        "tensorboard", "Where scalars and images go: TensorBoard (under output_dir/logs), Weights & Biases, both."
    )
    tracker_project_name: str = _arg("hf-vq", "Project / run-group name given to the trackers.")
    image_logging_steps: int = _arg(100, "Save and log a grid of inputs vs reconstructions every this many steps.")
    eval_steps: int = _arg(200, "Evaluate PSNR, SSIM and code usage on held-out images every this many steps.")
    max_consecutive_nonfinite: int = _arg(
        5, "Stop after this many optimizer steps in a row were skipped for a NaN/inf loss or gradient."
    )
    push_to_hub: bool = _arg(False, "Upload the final model, its discriminator, card and samples to the Hub.")
    hub_model_id: str | None = _arg(None, "Repository to push to. Unset: the output folder's name.")
    hub_private_repo: bool = _arg(False, "Create the Hub repository as private.")

    def __post_init__(self) -> None:
        _check_types(self)
        positive = ("resolution", "train_batch_size", "gradient_accumulation_steps", "num_eval_images")
        for name in positive:
            if getattr(self, name) < 1:
                raise _flag_error(name, "an integer >= 1", getattr(self, name))
        non_negative = (
            "shuffle_buffer_size",
            "dataloader_num_workers",
            "lr_warmup_steps",
            "checkpointing_steps",
            "logging_steps",
            "image_logging_steps",
            "eval_steps",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise _flag_error(name, "an integer >= 0", getattr(self, name))
        for name in ("max_train_steps", "checkpoints_total_limit", "max_consecutive_nonfinite"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise _flag_error(name, "an integer >= 1", value)
        if self.num_train_epochs is not None and not self.num_train_epochs > 0:
            raise _flag_error("num_train_epochs", "a number > 0", self.num_train_epochs)
        for name in ("learning_rate", "discriminator_learning_rate"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise _flag_error(name, "a finite number > 0", value)
        for name in ("adam_beta1", "adam_beta2", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise _flag_error(name, "a number in [0, 1)", getattr(self, name))
        for name in ("max_grad_norm", "adam_weight_decay", "discriminator_weight", "perceptual_weight"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise _flag_error(name, "a number >= 0", value)
        if self.discriminator_start is not None and self.discriminator_start < 0:
            raise _flag_error("discriminator_start", "an integer >= 0", self.discriminator_start)
        for name, choices in _literal_fields().items():
            if getattr(self, name) not in choices:
                raise _flag_error(name, f"one of {list(choices)}", getattr(self, name))
        if self.model_config is not None and self.init_from is not None:
            raise ValueError(
                "--model-config and --init-from both describe the model; give one: --init-from loads the config "
                "saved with the weights."
            )
        if self.resolution % 8:
            raise _flag_error("resolution", "a multiple of 8 (every built-in model downsamples by up to 8)", self.resolution)

    @property
    def uses_builtin_data(self) -> bool:
        return self.dataset_name is None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_error(name: str, expected: str, received: Any) -> ValueError:
    return ValueError(f"{_flag(name)} must be {expected}; got {received!r}.")


def _literal_fields() -> dict[str, tuple]:
    hints = typing.get_type_hints(TrainArguments)
    return {name: typing.get_args(t) for name, t in hints.items() if typing.get_origin(t) is Literal}


def _check_types(args: TrainArguments) -> None:
    """Values from a YAML/JSON file skip argparse's conversions: check each one against its annotation."""
    hints = typing.get_type_hints(TrainArguments)
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


def _read_config_file(path: str) -> dict[str, Any]:
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
        raise ValueError(f"--config {path!r}: expected a mapping of argument names to values, got {type(values).__name__}.")
    known = {f.name for f in dataclasses.fields(TrainArguments)}
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else " Run `hf-vq train --help` for the list."
            raise ValueError(f"--config {path!r}: unknown key `{key}`.{hint}")
        if name in ("model_config", "discriminator_config") and isinstance(value, dict):
            value = json.dumps(value)  # a mapping in the file is the same as inline JSON on the command line
        out[name] = value
    return out


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        TrainArguments,
        prog="hf-vq train",
        description="Train or fine-tune a VQ-GAN / VQ-VAE image tokenizer. With no arguments: a small VQ-GAN on "
        "the photos bundled with scikit-image, scikit-learn and matplotlib, offline, in about five minutes on a CPU.",
        allow_abbrev=False,
        usage="hf-vq train [--config FILE] [--FLAG VALUE ...]  (hf-vq train --help lists every flag)",
    )
    parser.add_argument(
        "--config", metavar="FILE", default=None, help="YAML or JSON file of arguments; command-line flags override it."
    )
    return parser


def parse_args(argv: list[str] | None = None) -> TrainArguments:
    """Parses `argv` (flags and an optional `--config FILE`) into [`TrainArguments`].

    Exits with status 2 and a message naming the flag or key on an unknown or invalid value, as argparse does.
    """
    parser = build_parser()
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        options = [s for action in parser._actions for s in action.option_strings]
        first = unknown[0].split("=")[0]
        close = difflib.get_close_matches(first, options, n=1)
        parser.error(f"unknown argument {unknown[0]!r}" + (f"; did you mean {close[0]}?" if close else ""))
    try:
        if namespace.config is not None:
            parser.set_defaults(**_read_config_file(namespace.config))
            namespace, _ = parser.parse_known_args(argv)  # file values become defaults: the command line wins
        values = {k: v for k, v in vars(namespace).items() if k != "config"}
        return TrainArguments(**values)
    except ValueError as error:
        parser.error(str(error))


def resolve_max_train_steps(args: TrainArguments, num_train_examples: int | None, num_processes: int) -> int:
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


__all__ = ["TrainArguments", "build_parser", "parse_args", "resolve_max_train_steps", "parse_json_or_file"]
