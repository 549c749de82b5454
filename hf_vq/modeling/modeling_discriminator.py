"""The VQ-GAN's PatchGAN discriminator as a `PreTrainedModel`, so it saves, loads and pushes on its own.

A fine-tuning run can start from a trained discriminator (`VQGANDiscriminator.from_pretrained(...)`) instead of a
random one, which otherwise pushes the generator around while it catches up. Module names follow taming's
`NLayerDiscriminator` (`main.{i}`) for every `norm_type`, so taming's BatchNorm discriminators map one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_discriminator import VQGANDiscriminatorConfig


@dataclass
class VQGANDiscriminatorOutput(ModelOutput):
    r"""
    Args:
        logits (`torch.FloatTensor` of shape `(batch_size, 1, grid_height, grid_width)`):
            Real-vs-fake logits, one per image patch, with no activation applied: positive means "real". The
            GAN losses in `hf_vq.losses` all take logits.
    """

    logits: torch.FloatTensor | None = None


def _norm(norm_type: str, channels: int, num_groups: int) -> nn.Module:
    if norm_type == "batch":
        return nn.BatchNorm2d(channels)
    if norm_type == "group":
        return nn.GroupNorm(num_groups, channels)
    if norm_type == "instance":
        # GroupNorm with one channel per group is InstanceNorm2d(affine=True) without running-stat options.
        return nn.GroupNorm(channels, channels)
    # Identity keeps the `main.{i}` indices the same for every norm type.
    return nn.Identity()


class VQGANDiscriminator(PreTrainedModel):
    r"""
    PatchGAN N-layer discriminator (Isola et al. 2017, https://arxiv.org/abs/1611.07004), as used by VQ-GAN
    (Esser et al. 2021, https://arxiv.org/abs/2012.09841). Returns logits: pair it with the hinge,
    non-saturating or vanilla losses of `hf_vq.losses`, never with a Sigmoid in front of a hinge loss.

    Args:
        config ([`VQGANDiscriminatorConfig`]): the architecture.
    """

    config_class = VQGANDiscriminatorConfig
    base_model_prefix = "discriminator"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: VQGANDiscriminatorConfig):
        super().__init__(config)
        channels = config.layer_channels
        slope = config.leaky_relu_slope
        # A norm's shift makes the conv bias redundant (taming drops it under BatchNorm).
        bias = config.norm_type == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, channels[0], kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(slope),
        ]
        for n in range(1, config.num_layers + 1):
            stride = 2 if n < config.num_layers else 1  # the last widening conv keeps the resolution
            layers += [
                nn.Conv2d(channels[n - 1], channels[n], kernel_size=4, stride=stride, padding=1, bias=bias),
                _norm(config.norm_type, channels[n], config.norm_num_groups),
                nn.LeakyReLU(slope),
            ]
        layers.append(nn.Conv2d(channels[-1], 1, kernel_size=4, stride=1, padding=1))  # logits: no activation
        self.main = nn.Sequential(*layers)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # DCGAN / taming init. Written with `transformers.initialization`, which leaves tensors loaded by
        # `from_pretrained` alone; that builds on the meta device, so every parameter and buffer is set here.
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            init.normal_(module.weight, mean=1.0, std=std)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)

    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True) -> VQGANDiscriminatorOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
                Real images or reconstructions, in the tokenizer's pixel range.
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`VQGANDiscriminatorOutput`] instead of a one-element tuple.

        Returns:
            [`VQGANDiscriminatorOutput`] with `logits` of shape
            `(batch_size, 1, height / 2**num_layers - 2, width / 2**num_layers - 2)`.
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.in_channels:
            raise ValueError(
                f"`pixel_values` must have shape (batch, {self.config.in_channels}, height, width); got "
                f"{tuple(pixel_values.shape)}."
            )
        logits = self.main(pixel_values)
        return VQGANDiscriminatorOutput(logits=logits) if return_dict else (logits,)
