"""The factory that builds a quantizer: one level's codebook size and code dimension, plus the options.

The size and dimension are explicit arguments rather than read from a config, so a model with several levels
(VQ-VAE-2's top and bottom codebooks) builds each from its own fields. Single-grid configs hand over theirs with
`build_quantizer(**config.quantizer_kwargs())`. The interface every quantizer implements is in `quantizer_base.py`.
"""

from __future__ import annotations

from typing import Any

from .configuration_utils import QUANTIZER_TYPES
from .quantizer_base import BaseQuantizer
from .quantizer_fsq import FiniteScalarQuantizer
from .quantizer_lfq import LookupFreeQuantizer
from .quantizer_residual import ResidualVectorQuantizer
from .quantizer_vq import VectorQuantizer


def build_quantizer(
    quantizer_type: str = "vq",
    *,
    codebook_size: int,
    embed_dim: int,
    usage_window: int = 100,
    fsq_levels: list[int] | None = None,
    num_quantizers: int = 1,
    **vq_options: Any,
) -> BaseQuantizer:
    """Builds one quantizer.

    Args:
        quantizer_type (`str`, *optional*, defaults to `"vq"`):
            One of `"vq"`, `"residual_vq"`, `"fsq"`, `"lfq"` (see `BaseVQConfig.quantizer_type`).
        codebook_size (`int`):
            K, the number of token ids (for `"fsq"`, the product of `fsq_levels`).
        embed_dim (`int`):
            Channels of the latents the quantizer receives and of the codes it returns.
        usage_window (`int`, *optional*, defaults to 100):
            Training steps over which code usage is measured and after which an unused code is dead.
        fsq_levels (`list[int]`, *optional*):
            `"fsq"` only: levels per channel.
        num_quantizers (`int`, *optional*, defaults to 1):
            `"residual_vq"` only: stacked stages.
        vq_options:
            Keyword arguments of [`VectorQuantizer`] (`commitment_cost`, `codebook_update`, `kmeans_init`, ...);
            `"lfq"` takes `commitment_cost`, `entropy_loss_weight` and `entropy_temperature` of them, `"fsq"` none.
    """
    if quantizer_type == "vq":
        return VectorQuantizer(
            codebook_size=codebook_size, embed_dim=embed_dim, usage_window=usage_window, **vq_options
        )
    if quantizer_type == "residual_vq":
        return ResidualVectorQuantizer(
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            embed_dim=embed_dim,
            usage_window=usage_window,
            **vq_options,
        )
    if quantizer_type == "fsq":
        return FiniteScalarQuantizer(levels=fsq_levels, embed_dim=embed_dim, usage_window=usage_window)
    if quantizer_type == "lfq":
        lfq_options = ("commitment_cost", "entropy_loss_weight", "entropy_temperature")
        return LookupFreeQuantizer(
            codebook_size=codebook_size,
            embed_dim=embed_dim,
            usage_window=usage_window,
            **{name: vq_options[name] for name in lfq_options if name in vq_options},
        )
    raise ValueError(f"Unknown `quantizer_type` {quantizer_type!r}; expected one of {QUANTIZER_TYPES}.")


__all__ = ["QUANTIZER_TYPES", "build_quantizer"]
