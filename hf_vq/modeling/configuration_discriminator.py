"""Configuration of the VQ-GAN's PatchGAN discriminator (Isola et al. 2017, https://arxiv.org/abs/1611.07004)."""

from __future__ import annotations

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_utils import ModelTypeCheckMixin, check_field_types, config_error

DISCRIMINATOR_NORM_TYPES = ("batch", "group", "instance", "none")


@strict(accept_kwargs=True)
class VQGANDiscriminatorConfig(ModelTypeCheckMixin, PreTrainedConfig):
    r"""
    Configuration of a [`VQGANDiscriminator`]: the N-layer PatchGAN discriminator of pix2pix and taming
    (`NLayerDiscriminator`). It maps an image to a grid of real/fake *logits*, one per overlapping patch; with
    the defaults (3 layers) each logit sees a 70x70 patch.

    Layout: a stride-2 4x4 conv to `base_channels` + LeakyReLU(0.2); `num_layers - 1` stride-2 4x4 convs that
    double the width (capped at `base_channels * max_channel_multiplier`) + norm + LeakyReLU; one stride-1
    4x4 conv + norm + LeakyReLU; a stride-1 4x4 conv to one channel, with no activation (logits).

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            Channels of the images it judges.
        base_channels (`int`, *optional*, defaults to 64):
            Width of the first layer (taming's `ndf`).
        num_layers (`int`, *optional*, defaults to 3):
            Number of stride-2 convolutions (taming's `n_layers`). Each one doubles the receptive field:
            1 -> 16x16 patches, 2 -> 34x34, 3 -> 70x70, 4 -> 142x142. An `H x W` image gives an
            `(H / 2**num_layers - 2) x (W / 2**num_layers - 2)` grid, so images need at least `3 * 2**num_layers`
            pixels a side (24 for the default).
        max_channel_multiplier (`int`, *optional*, defaults to 8):
            Cap on the width multiplier of the deeper layers (taming hard-codes 8).
        norm_type (`str`, *optional*, defaults to `"group"`):
            Normalisation after every conv but the first and the last:
            - `"group"` (default): GroupNorm with `norm_num_groups` groups. It depends on each image alone, so the
              discriminator behaves the same in train and eval mode, for any per-device batch size and under
              gradient accumulation, it sees real and fake batches through the same statistics, and it leaves the
              per-sample gradients that the R1 penalty differentiates well defined. BatchNorm has none of
              these properties, and its batch statistics differ between the all-real and all-fake batches it is
              shown, a shortcut the discriminator can learn from.
            - `"batch"`: BatchNorm2d, taming's choice; use it to load taming discriminators.
            - `"instance"`: per-channel, per-image normalisation with an affine transform (GroupNorm with one
              channel per group).
            - `"none"`: no normalisation; the convs get biases.
        norm_num_groups (`int`, *optional*, defaults to 32):
            Groups of the GroupNorms when `norm_type="group"`. Must divide the width of every normalised layer.
        leaky_relu_slope (`float`, *optional*, defaults to 0.2):
            Negative slope of the LeakyReLUs.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the conv weights' normal init; norm scales are drawn from N(1, initializer_range)
            (DCGAN's init, used by taming).

    Example:

    ```python
    >>> import torch
    >>> from hf_vq import VQGANDiscriminator, VQGANDiscriminatorConfig
    >>> config = VQGANDiscriminatorConfig(base_channels=8, num_layers=2, norm_num_groups=4)
    >>> discriminator = VQGANDiscriminator(config)
    >>> discriminator(torch.randn(2, 3, 64, 64)).logits.shape
    torch.Size([2, 1, 14, 14])

    ```
    """

    model_type = "hf_vq_discriminator"

    in_channels: int = 3
    base_channels: int = 64
    num_layers: int = 3
    max_channel_multiplier: int = 8
    norm_type: Literal["batch", "group", "instance", "none"] = "group"
    norm_num_groups: int = 32
    leaky_relu_slope: float | int = 0.2
    initializer_range: float | int = 0.02

    def __post_init__(self, **kwargs):
        check_field_types(self)
        super().__post_init__(**kwargs)
        self.validate_discriminator_fields()

    @property
    def layer_channels(self) -> list[int]:
        """Output width of each conv but the last (which outputs one logit channel)."""
        return [self.base_channels * min(2**n, self.max_channel_multiplier) for n in range(self.num_layers + 1)]

    def validate_discriminator_fields(self) -> None:
        for name in ("in_channels", "base_channels", "num_layers", "max_channel_multiplier"):
            value = getattr(self, name)
            if value < 1:
                raise config_error(
                    name, "a positive integer", value, f"Set `{name}` to at least 1 (taming: 3, 64, 3, 8)."
                )
        if self.norm_type not in DISCRIMINATOR_NORM_TYPES:
            raise config_error("norm_type", f"one of {DISCRIMINATOR_NORM_TYPES}", self.norm_type, "Use 'group'.")
        if self.norm_type == "group":
            normalised = self.layer_channels[1:]
            bad = [c for c in normalised if self.norm_num_groups < 1 or c % self.norm_num_groups]
            if bad:
                raise config_error(
                    "norm_num_groups",
                    f"a positive divisor of every normalised layer width {normalised}",
                    self.norm_num_groups,
                    "Pick a group count that divides them all (e.g. 32 for base_channels=64, 4 for base_channels=8).",
                )
        if self.leaky_relu_slope < 0:
            raise config_error("leaky_relu_slope", "a number >= 0", self.leaky_relu_slope, "Use 0.2.")
        if self.initializer_range <= 0:
            raise config_error("initializer_range", "a number > 0", self.initializer_range, "Use 0.02.")
