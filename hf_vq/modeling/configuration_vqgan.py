"""Configuration of the VQ-GAN tokenizer (Esser et al. 2021, https://arxiv.org/abs/2012.09841)."""

from __future__ import annotations

from typing import Literal

from huggingface_hub.dataclasses import strict

from .configuration_utils import BaseVQConfig, check_field_types, config_error

DOWN_BLOCK_TYPES = ("DownEncoderBlock2D", "AttnDownEncoderBlock2D")
UP_BLOCK_TYPES = ("UpDecoderBlock2D", "AttnUpDecoderBlock2D")


@strict(accept_kwargs=True)
class VQGANConfig(BaseVQConfig):
    r"""
    Configuration of a [`VQGANModel`]: the taming-transformers / latent-diffusion convolutional autoencoder
    (ResNet blocks with GroupNorm + SiLU, self-attention where configured and in the mid-block) with a
    quantizer between `quant_conv` and `post_quant_conv`. The defaults are taming's f16 ImageNet model
    (ch 128, ch_mult (1, 1, 2, 2, 4), 2 res blocks, attention at 16², 256-d latents, K = 16384).

    Field names follow diffusers' `VQModel` wherever the meaning is the same, so a config maps one to one.
    Besides the fields below, every field of [`BaseVQConfig`] (quantizer, loss weights, `pixel_range`) applies.

    Args:
        block_out_channels (`list[int]`, *optional*, defaults to `[128, 128, 256, 256, 512]`):
            Output channels of each resolution level. With n levels the downsampling factor is `2 ** (n - 1)`.
        down_block_types (`list[str]`, *optional*):
            One per level: `"DownEncoderBlock2D"` or `"AttnDownEncoderBlock2D"` (self-attention after each
            ResNet block of that level). Defaults to attention at the lowest resolution only.
        up_block_types (`list[str]`, *optional*):
            One per level, lowest resolution first (the order the decoder applies them):
            `"UpDecoderBlock2D"` or `"AttnUpDecoderBlock2D"`. Defaults to the mirror of `down_block_types`.
        layers_per_block (`int`, *optional*, defaults to 2):
            ResNet blocks per encoder level; the decoder uses `layers_per_block + 1`, as in taming and diffusers.
        act_fn (`str`, *optional*, defaults to `"silu"`):
            Activation of the ResNet blocks.
        latent_channels (`int`, *optional*, defaults to 256):
            Channels of the encoder output (taming's `z_channels`).
        num_vq_embeddings (`int`, *optional*, defaults to 16384):
            Codebook size K.
        vq_embed_dim (`int`, *optional*):
            Code dimension (taming's `embed_dim`). Defaults to `latent_channels`.
        norm_num_groups (`int`, *optional*, defaults to 32):
            Groups of every GroupNorm. Must divide every entry of `block_out_channels`.
        norm_type (`str`, *optional*, defaults to `"group"`):
            `"group"` for GroupNorm everywhere, `"spatial"` for MoVQ's spatially-conditioned norms in the decoder
            (Kandinsky 2.2's `movq`).
        mid_block_add_attention (`bool`, *optional*, defaults to `True`):
            Whether the mid-blocks of encoder and decoder have a self-attention layer.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout inside the ResNet blocks.
        sample_size (`int`, *optional*, defaults to 256):
            Training image size. Any size divisible by the downsampling factor works at inference.
        scaling_factor (`float`, *optional*, defaults to 1.0):
            Scale applied to latents by diffusers pipelines that diffuse in latent space.
        force_upcast (`bool`, *optional*, defaults to `False`):
            Tells diffusers pipelines to run this model in fp32 even when the pipeline runs in half precision.
        reconstruction_loss_type (`str`, *optional*, defaults to `"l1"`):
            Pixel loss reported by `forward`: taming's VQ-GAN uses L1.

    Example:

    ```python
    >>> from hf_vq import VQGANConfig, VQGANModel
    >>> config = VQGANConfig(
    ...     block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    ...     layers_per_block=1, latent_channels=8, num_vq_embeddings=256, norm_num_groups=8)
    >>> model = VQGANModel(config)
    >>> model.downsampling_factor
    2

    ```
    """

    model_type = "hf_vq_vqgan"

    block_out_channels: list[int] | tuple[int, ...] = (128, 128, 256, 256, 512)
    down_block_types: list[str] | tuple[str, ...] | None = None
    up_block_types: list[str] | tuple[str, ...] | None = None
    layers_per_block: int = 2
    act_fn: Literal["silu", "swish", "gelu", "relu"] = "silu"
    latent_channels: int = 256
    num_vq_embeddings: int = 16384
    norm_num_groups: int = 32
    norm_type: Literal["group", "spatial"] = "group"
    mid_block_add_attention: bool = True
    dropout: float | int = 0.0
    sample_size: int = 256
    scaling_factor: float | int = 1.0
    force_upcast: bool = False
    reconstruction_loss_type: Literal["mse", "l1"] = "l1"

    def __post_init__(self, **kwargs):
        check_field_types(self)  # before the lines below iterate the lists
        self.block_out_channels = list(self.block_out_channels)
        levels = len(self.block_out_channels)
        if self.down_block_types is None:
            self.down_block_types = ["DownEncoderBlock2D"] * (levels - 1) + ["AttnDownEncoderBlock2D"]
        self.down_block_types = list(self.down_block_types)
        if self.up_block_types is None:
            mirror = {"DownEncoderBlock2D": "UpDecoderBlock2D", "AttnDownEncoderBlock2D": "AttnUpDecoderBlock2D"}
            self.up_block_types = [mirror.get(t, t) for t in reversed(self.down_block_types)]
        self.up_block_types = list(self.up_block_types)
        super().__post_init__(**kwargs)
        self.validate_vqgan_fields()

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def architecture_description(self) -> str:
        attention = [i for i, t in enumerate(self.down_block_types) if t.startswith("Attn")]
        mid = " and in the mid-block" if self.mid_block_add_attention else ""
        return (
            f"channels {list(self.block_out_channels)}, {self.layers_per_block} ResNet block(s) per level, "
            f"self-attention at levels {attention or 'none'}{mid}, GroupNorm({self.norm_num_groups})"
        )

    def validate_vqgan_fields(self) -> None:
        levels = len(self.block_out_channels)
        if levels < 1:
            raise config_error(
                "block_out_channels", "a non-empty list", self.block_out_channels, "Use e.g. [128, 256]."
            )
        if min(self.block_out_channels) < 1:
            raise config_error(
                "block_out_channels", "positive channel counts", self.block_out_channels, "Use e.g. [128, 256]."
            )
        for name, allowed in (("down_block_types", DOWN_BLOCK_TYPES), ("up_block_types", UP_BLOCK_TYPES)):
            types = getattr(self, name)
            if len(types) != levels:
                raise config_error(
                    name,
                    f"one entry per level of `block_out_channels` ({levels})",
                    f"{len(types)} entries {types}",
                    f"Give `{name}` exactly {levels} entries, or leave it unset for the default.",
                )
            unknown = [t for t in types if t not in allowed]
            if unknown:
                raise config_error(name, f"entries from {allowed}", unknown, "Replace the unknown block types.")
        bad = [c for c in self.block_out_channels if self.norm_num_groups < 1 or c % self.norm_num_groups]
        if bad:
            raise config_error(
                "norm_num_groups",
                f"a divisor of every entry of `block_out_channels` {self.block_out_channels}",
                self.norm_num_groups,
                "Pick a group count that divides all channel counts (e.g. 4 or 8 for tiny test models).",
            )
        if self.layers_per_block < 1:
            raise config_error("layers_per_block", "an integer >= 1", self.layers_per_block, "Use e.g. 2.")
        if not 0.0 <= self.dropout < 1.0:
            raise config_error("dropout", "a probability in [0, 1)", self.dropout, "Use 0.0 to disable dropout.")
        if self.sample_size < 1:
            raise config_error("sample_size", "a positive integer", self.sample_size, "Use e.g. 256.")
        multiple = self.image_multiple
        if self.sample_size % multiple:
            raise config_error(
                "sample_size",
                f"divisible by the downsampling factor {multiple}",
                self.sample_size,
                f"Use {max(1, round(self.sample_size / multiple)) * multiple}.",
            )
