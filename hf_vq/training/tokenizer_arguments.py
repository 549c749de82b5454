"""Arguments of `hf-vq train`: the tokenizer's groups of flags on top of the shared loop's (`arguments.py`).

- [`TokenizerModelArguments`]: which tokenizer; `--model-type` reads the open registry [`TOKENIZER_TYPES`]
  (`tokenizer_types.py`), so a new tokenizer is one entry there;
- [`ImageDataArguments`]: the training and held-out images;
- [`AdversarialArguments`]: the VQ-GAN objective and its discriminator;
- [`TokenizerOptimizationArguments`]: the loop's optimisation flags with the main job's defaults.

[`TrainArguments`] is the flat union of these and the loop's output group; [`parse_train_args`] reads it.
"""

import math
from dataclasses import dataclass
from typing import Literal

from transformers import HfArgumentParser

from .arguments import (
    Arguments,
    OptimizationArguments,
    OutputArguments,
    arg,
    build_parser,
    check,
    flag_error,
    parse_args,
)
from .tokenizer_types import TOKENIZER_TYPES


@dataclass
class TokenizerModelArguments(Arguments):
    """Which tokenizer: a registered type from scratch, or a saved one to fine-tune; what to freeze."""

    _argument_group_name = "model"

    model_type: str = arg(
        "vqgan",
        "Tokenizer to train from scratch: `vqgan` (taming/latent-diffusion autoencoder + GAN) or `vqvae` "
        "(any key of hf_vq.training.tokenizer_types.TOKENIZER_TYPES).",
        choices=TOKENIZER_TYPES,  # the dict itself: argparse checks membership, so entries added later count
    )
    model_config: str | None = arg(
        None,
        "Fields to change in the main job's small --model-type config (sized for a CPU; sample_size from "
        "--resolution): an inline JSON object, a JSON file, or (in a --config file) a mapping. Every field not given "
        "keeps the main job's default, e.g. '{\"num_vq_embeddings\": 4096}'. A config.json written by "
        "save_pretrained (it names its model_type) is taken whole.",
    )
    init_from: str | None = arg(
        None,
        "Fine-tune instead of training from scratch: a Hub model id or a local folder written by save_pretrained. "
        "Its `discriminator/` subfolder is loaded too when present.",
    )
    freeze_encoder: bool = arg(False, "Do not train the encoder and quant_conv (decoder-only fine-tuning).")
    freeze_codebook: bool = arg(
        False, "Do not train the codebook, so the token ids of existing data stay valid (decoder-only fine-tuning)."
    )
    gradient_checkpointing: bool = arg(False, "Recompute activations in the backward pass to save memory.")

    def _validate(self) -> None:
        if self.model_type not in TOKENIZER_TYPES:
            raise flag_error("model_type", f"one of {list(TOKENIZER_TYPES)}", self.model_type)
        if self.model_config is not None and self.init_from is not None:
            raise ValueError(
                "--model-config and --init-from both describe the model; give one: --init-from loads the config "
                "saved with the weights."
            )


@dataclass
class ImageDataArguments(Arguments):
    """Training and held-out images: where from, at what size, how they are streamed."""

    _argument_group_name = "data"

    dataset_name: str | None = arg(
        None,
        "Training images: a Hub dataset id, a local image folder, or parquet / webdataset (.tar) shards (a folder "
        "or a glob). Unset: random crops of the photos bundled with scikit-image, scikit-learn and matplotlib.",
    )
    dataset_config_name: str | None = arg(None, "Configuration (subset) of the Hub dataset.")
    train_split: str = arg("train", "Split to train on.")
    eval_split: str | None = arg(
        None, "Split of held-out images for evaluation. Unset: `validation` or `test` when the dataset has one."
    )
    image_column: str | None = arg(None, "Column holding the images. Unset: the first column of image type.")
    resolution: int = arg(64, "Side of the square training crops, in pixels.")
    random_flip: bool = arg(True, "Flip training crops horizontally at random.")
    shuffle_buffer_size: int = arg(1000, "Examples in the streaming shuffle buffer (0 disables shuffling).")
    dataloader_num_workers: int = arg(
        2, "Data loader worker processes per training process (capped by the dataset's shard count)."
    )
    num_eval_images: int = arg(16, "Held-out images used by each evaluation and shown in the sample grid.")

    def _validate(self) -> None:
        check(self, ("resolution", "num_eval_images"), "an integer >= 1", lambda v: v >= 1)
        check(self, ("shuffle_buffer_size", "dataloader_num_workers"), "an integer >= 0", lambda v: v >= 0)
        if self.resolution % 8:
            below, above = self.resolution // 8 * 8, self.resolution // 8 * 8 + 8
            nearest = [size for size in (below, above) if size >= 8]
            if len(nearest) == 2 and self.resolution - below != above - self.resolution:
                nearest = [min(nearest, key=lambda size: abs(size - self.resolution))]
            expected = "a multiple of 8 (every built-in model downsamples by up to 8)"
            raise ValueError(
                f"{flag_error('resolution', expected, self.resolution)} The nearest valid "
                f"size{'s' if len(nearest) > 1 else ''}: --resolution {' or '.join(map(str, nearest))}."
            )

    @property
    def uses_builtin_data(self) -> bool:
        return self.dataset_name is None


@dataclass
class AdversarialArguments(Arguments):
    """The VQ-GAN objective (`hf_vq.losses.VQGANLossConfig`) and its discriminator; unused by `--model-type vqvae`.
    Unset values take the objective's defaults, the schedule scaled to the run (`tokenizer.build_objective`)."""

    _argument_group_name = "VQ-GAN objective (discriminator, perceptual loss, regularisers)"

    discriminator_config: str | None = arg(
        None, "Discriminator config: a config.json path or inline JSON. Unset: the default PatchGAN."
    )
    discriminator_learning_rate: float | None = arg(None, "Discriminator learning rate. Unset: learning_rate.")
    discriminator_start: int | None = arg(
        None, "Optimizer step at which the GAN terms switch on. Unset: the objective's default for the run length."
    )
    discriminator_weight: float | None = arg(None, "Weight of the adversarial term. Unset: the objective's default.")
    perceptual_weight: float | None = arg(
        None, "Weight of the LPIPS term (0 disables it). Unset: the objective's default."
    )
    perceptual_net: Literal["vgg16", "alexnet"] = arg(
        "alexnet",
        "Backbone of the LPIPS perceptual loss: `alexnet` (~20x cheaper, the CPU-sized default) or `vgg16` "
        "(taming's choice, for GPU training).",
    )
    lecam_weight: float | None = arg(
        None,
        "Weight of the LeCam regulariser of the discriminator (MAGVIT-v2 uses 0.001; 0 disables it). Unset: the "
        "objective's default (off).",
    )
    lecam_ema_decay: float | None = arg(
        None, "Decay of the LeCam anchors' moving averages of the logits. Unset: the objective's default (0.99)."
    )
    r1_weight: float | None = arg(
        None, "Weight of the R1 gradient penalty on real images (0 disables it). Unset: the objective's default (off)."
    )

    def _validate(self) -> None:
        check(self, ("discriminator_learning_rate",), "a finite number > 0", lambda v: v > 0 and math.isfinite(v))
        weights = ("discriminator_weight", "perceptual_weight", "lecam_weight", "r1_weight")
        check(self, weights, "a number >= 0", lambda v: v >= 0)
        check(self, ("discriminator_start",), "an integer >= 0", lambda v: v >= 0)
        check(self, ("lecam_ema_decay",), "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)


@dataclass
class TokenizerOptimizationArguments(OptimizationArguments):
    """The loop's optimisation flags with the main job's defaults: a rate sized for its small model, and Adam's
    beta1 following the GAN (taming's 0.5 keeps adversarial training stable; without a GAN there is no reason for it).
    Measured at the main job's 400 steps without the GAN: lr 1e-3 with beta1 0.9 against 4e-4 with 0.5 gave +0.8 dB
    held-out PSNR and 14% lower LPIPS on one thread (README, 'What the main job gives')."""

    _argument_group_name = "optimisation"

    learning_rate: float = arg(
        1e-3,
        "Learning rate of the model (the generator), per total batch if --scale-lr. The default suits the main job's "
        "small model; large models train at 1e-4 - 4.5e-4 (taming's f16 VQ-GAN: 4.5e-6 per image of the batch).",
    )
    adam_beta1: float | None = arg(
        None, "Adam beta1 of every optimizer. Unset: 0.5 when the run trains a GAN (taming's VQ-GAN), else 0.9."
    )


@dataclass
class TrainArguments(
    OutputArguments, TokenizerOptimizationArguments, AdversarialArguments, ImageDataArguments, TokenizerModelArguments
):
    """Everything `hf-vq train` can be told. Run `hf-vq train --help` for the same text, by group."""


TRAIN_PROG = "hf-vq train"
TRAIN_DESCRIPTION = (
    "Train or fine-tune a VQ-GAN / VQ-VAE image tokenizer. With no arguments: a small VQ-GAN on the photos bundled "
    "with scikit-image, scikit-learn and matplotlib, offline, in about five minutes on a CPU."
)


def build_train_parser() -> HfArgumentParser:
    """`hf-vq train`'s parser (see `arguments.build_parser`): `--help` shows one section per flag group."""
    return build_parser(TrainArguments, prog=TRAIN_PROG, description=TRAIN_DESCRIPTION)


def parse_train_args(argv: list[str] | None = None) -> TrainArguments:
    """`hf-vq train`'s arguments from `argv` (flags and an optional `--config FILE`; see `arguments.parse_args`).

    Args:
        argv (`list[str]`, *optional*):
            The flags; `None` reads `sys.argv[1:]`.
    """
    return parse_args(argv, TrainArguments, prog=TRAIN_PROG, description=TRAIN_DESCRIPTION)


__all__ = [
    "TRAIN_DESCRIPTION",
    "TRAIN_PROG",
    "AdversarialArguments",
    "ImageDataArguments",
    "TokenizerModelArguments",
    "TokenizerOptimizationArguments",
    "TrainArguments",
    "build_train_parser",
    "parse_train_args",
]
