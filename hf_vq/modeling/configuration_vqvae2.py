"""Configuration of the hierarchical VQ-VAE-2 tokenizer (Razavi et al. 2019, https://arxiv.org/abs/1906.00446)."""

from __future__ import annotations

import math
from typing import Any

from huggingface_hub.dataclasses import strict

from .configuration_utils import BaseVQConfig, check_field_types, config_error


@strict(accept_kwargs=True)
class VQVAE2Config(BaseVQConfig):
    r"""
    Configuration of a [`VQVAE2Model`]: two token grids, a coarse top grid for global structure and a bottom grid,
    conditioned on the top, for detail. The defaults follow the paper's 256² model as rosinality's
    vq-vae-2-pytorch builds it: 128 hidden channels, 2 residual blocks of 32 channels, 64-d codes, 512 codes per
    level, a 64×64 bottom grid (f4) and a 32×32 top grid (f8).

    The shared fields of [`BaseVQConfig`] (`num_vq_embeddings`, `vq_embed_dim`, `fsq_levels`) describe the bottom
    level; `top_num_vq_embeddings`, `top_vq_embed_dim` and `top_fsq_levels` the top one. Both levels use
    `quantizer_type` and the quantizer options (EMA, k-means, restarts, ...), each with its own codebook.

    Args:
        hidden_channels (`int`, *optional*, defaults to 128):
            Width of the encoders' and decoders' convolutions.
        residual_hidden_channels (`int`, *optional*, defaults to 32):
            Width inside each residual block.
        num_residual_layers (`int`, *optional*, defaults to 2):
            Residual blocks in each encoder and decoder.
        num_bottom_downsample_layers (`int`, *optional*, defaults to 2):
            Stride-2 convolutions of the bottom encoder: the bottom grid is `2 ** num_bottom_downsample_layers`
            times smaller than the image.
        num_top_downsample_layers (`int`, *optional*, defaults to 1):
            Further stride-2 convolutions of the top encoder on the bottom features.
        latent_channels (`int`, *optional*, defaults to 128):
            Channels of the encoders' outputs before the 1×1 convolutions into the code spaces.
        num_vq_embeddings (`int`, *optional*, defaults to 512):
            Bottom codebook size.
        vq_embed_dim (`int`, *optional*, defaults to 64):
            Bottom code dimension.
        top_num_vq_embeddings (`int`, *optional*, defaults to 512):
            Top codebook size.
        top_vq_embed_dim (`int`, *optional*, defaults to 64):
            Top code dimension.
        top_fsq_levels (`list[int]`, *optional*):
            `quantizer_type="fsq"`: levels per channel of the top quantizer (product = `top_num_vq_embeddings`).
        sample_size (`int`, *optional*, defaults to 256):
            Training image size.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq import VQVAE2Config, VQVAE2Model
    >>> model = VQVAE2Model(VQVAE2Config(hidden_channels=16, residual_hidden_channels=8, latent_channels=8,
    ...                                  num_vq_embeddings=32, vq_embed_dim=4, top_num_vq_embeddings=16,
    ...                                  top_vq_embed_dim=4, sample_size=32)).eval()
    >>> top, bottom = model.encode_to_indices(torch.rand(1, 3, 32, 32) * 2 - 1)
    >>> top.shape, bottom.shape
    (torch.Size([1, 4, 4]), torch.Size([1, 8, 8]))

    ```
    """

    model_type = "hf_vq_vqvae2"

    hidden_channels: int = 128
    residual_hidden_channels: int = 32
    num_residual_layers: int = 2
    num_bottom_downsample_layers: int = 2
    num_top_downsample_layers: int = 1
    latent_channels: int = 128
    num_vq_embeddings: int = 512
    vq_embed_dim: int | None = 64
    top_num_vq_embeddings: int = 512
    top_vq_embed_dim: int = 64
    top_fsq_levels: list[int] | tuple[int, ...] | None = None
    sample_size: int = 256

    def __post_init__(self, **kwargs):
        check_field_types(self)
        if self.top_fsq_levels is not None:
            self.top_fsq_levels = [int(v) for v in self.top_fsq_levels]
        super().__post_init__(**kwargs)
        for name in (
            "hidden_channels",
            "residual_hidden_channels",
            "num_bottom_downsample_layers",
            "num_top_downsample_layers",
            "top_num_vq_embeddings",
            "top_vq_embed_dim",
            "sample_size",
        ):
            if getattr(self, name) < 1:
                raise config_error(name, "a positive integer", getattr(self, name), f"Set `{name}` to at least 1.")
        if self.num_residual_layers < 0:
            raise config_error("num_residual_layers", "an integer >= 0", self.num_residual_layers, "Use e.g. 2.")
        if self.quantizer_type == "residual_vq":
            raise config_error(
                "quantizer_type",
                "'vq', 'fsq' or 'lfq' for VQ-VAE-2 (its levels already refine each other)",
                self.quantizer_type,
                "Use quantizer_type='vq'.",
            )
        self._validate_top_level()
        multiple = self.image_multiple
        if self.sample_size % multiple:
            valid = max(1, round(self.sample_size / multiple)) * multiple
            raise config_error(
                "sample_size", f"divisible by the top grid's factor {multiple}", self.sample_size, f"Use {valid}."
            )

    def _validate_top_level(self) -> None:
        size = self.top_num_vq_embeddings
        if self.quantizer_type == "fsq":
            if not self.top_fsq_levels or math.prod(self.top_fsq_levels) != size or min(self.top_fsq_levels) < 2:
                raise config_error(
                    "top_fsq_levels",
                    f"levels >= 2 whose product is `top_num_vq_embeddings` ({size})",
                    self.top_fsq_levels,
                    "Use e.g. top_fsq_levels=[8, 6, 5] with top_num_vq_embeddings=240.",
                )
        elif self.top_fsq_levels is not None:
            raise config_error("top_fsq_levels", "None unless quantizer_type='fsq'", self.top_fsq_levels, "Remove it.")
        if self.quantizer_type == "lfq" and (size < 2 or size & (size - 1)):
            lower = 1 << max(size.bit_length() - 1, 1)
            raise config_error("top_num_vq_embeddings", "a power of 2 for LFQ", size, f"Try {lower} or {lower * 2}.")

    @property
    def bottom_downsampling_factor(self) -> int:
        """Image side / bottom grid side."""
        return 2**self.num_bottom_downsample_layers

    @property
    def top_downsampling_factor(self) -> int:
        """Image side / top grid side."""
        return 2 ** (self.num_bottom_downsample_layers + self.num_top_downsample_layers)

    @property
    def downsampling_factor(self) -> int:
        """The finest (bottom) grid's factor, as for every tokenizer (`model.downsampling_factor`). Image sides must
        be divisible by `image_multiple`, the top grid's factor, for both grids to be whole."""
        return self.bottom_downsampling_factor

    @property
    def image_multiple(self) -> int:
        return self.top_downsampling_factor

    def quantizer_kwargs(self, level: str = "bottom") -> dict[str, Any]:
        """`build_quantizer` arguments of the `"top"` or `"bottom"` quantizer."""
        kwargs = super().quantizer_kwargs()
        if level == "top":
            kwargs.update(
                codebook_size=self.top_num_vq_embeddings,
                embed_dim=self.top_vq_embed_dim,
                fsq_levels=self.top_fsq_levels,
            )
        elif level != "bottom":
            raise ValueError(f"`level` must be 'top' or 'bottom'; got {level!r}.")
        return kwargs

    def architecture_description(self) -> str:
        return (
            f"bottom encoder {self.num_bottom_downsample_layers} and top encoder {self.num_top_downsample_layers} "
            f"stride-2 4×4 convs, {self.hidden_channels} channels, {self.num_residual_layers} residual blocks "
            f"({self.residual_hidden_channels} hidden) per encoder and decoder; the bottom code search sees the "
            "decoded top codes"
        )

    def codebook_description(self) -> str:
        return (
            f"top {self.top_num_vq_embeddings:,} codes × {self.top_vq_embed_dim} dims, "
            f"bottom {self.num_vq_embeddings:,} codes × {self.vq_embed_dim} dims"
        )


__all__ = ["VQVAE2Config"]
