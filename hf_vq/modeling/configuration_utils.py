"""Fields shared by every hf-vq tokenizer config: the quantizer, its losses and the pixel range.

`VQGANConfig` and `VQVAEConfig` inherit from `BaseVQConfig`; the architecture fields live in each of them.
"""

from __future__ import annotations

from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

QUANTIZER_TYPES = ("vq",)


def config_error(field: str, expected: str, received: Any, fix: str) -> ValueError:
    """A `ValueError` that names the field, what it expected, what it received and how to fix it."""
    return ValueError(f"`{field}` must be {expected}; got {received!r}. {fix}")


@strict(accept_kwargs=True)
class BaseVQConfig(PreTrainedConfig):
    r"""
    Fields common to all hf-vq image tokenizers. Not used on its own: see [`VQGANConfig`] and [`VQVAEConfig`].

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            Number of image channels the encoder reads (3 for RGB, 1 for grayscale).
        out_channels (`int`, *optional*, defaults to 3):
            Number of image channels the decoder writes.
        latent_channels (`int`, *optional*):
            Channels of the encoder's output before `quant_conv` (diffusers' `latent_channels`).
        num_vq_embeddings (`int`, *optional*):
            Codebook size K: token ids are in `[0, num_vq_embeddings)`.
        vq_embed_dim (`int`, *optional*):
            Dimension D of each code. Defaults to `latent_channels`.
        pixel_range (`tuple[float, float]`, *optional*, defaults to `(-1.0, 1.0)`):
            Range of the pixel values the model takes and returns. Images in `[0, 1]` map to it linearly.
        quantizer_type (`str`, *optional*, defaults to `"vq"`):
            Which quantizer sits between encoder and decoder. `"vq"`: nearest-code vector quantisation
            (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937).
        commitment_cost (`float`, *optional*, defaults to 0.25):
            β, the weight of the commitment term `‖z − sg[e]‖²` that pulls encoder outputs to their codes.
        codebook_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the codebook term `‖sg[z] − e‖²` that pulls codes to encoder outputs.
        beta_placement (`str`, *optional*, defaults to `"commitment"`):
            Which term β multiplies. `"commitment"` is the VQ-VAE objective. `"codebook"` reproduces
            taming-transformers and diffusers' `legacy=True` quantizer, which put β on the codebook term;
            converted checkpoints set it so their original losses are reproduced.
        quantizer_chunk_size (`int`, *optional*, defaults to 8192):
            Rows of encoder outputs whose distances to all K codes are computed at once. Memory of the
            nearest-code search is `O(quantizer_chunk_size * K)` instead of `O(N * K)`; results do not depend on it.
        reconstruction_loss_type (`str`, *optional*, defaults to `"mse"`):
            Pixel loss reported by `forward`: `"mse"` or `"l1"`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation used by layers that are initialised from a normal distribution.
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 256
    num_vq_embeddings: int = 16384
    vq_embed_dim: int | None = None
    pixel_range: list[float | int] | tuple[float | int, float | int] = (-1.0, 1.0)
    quantizer_type: Literal["vq"] = "vq"
    commitment_cost: float | int = 0.25
    codebook_loss_weight: float | int = 1.0
    beta_placement: Literal["commitment", "codebook"] = "commitment"
    quantizer_chunk_size: int = 8192
    reconstruction_loss_type: Literal["mse", "l1"] = "mse"
    initializer_range: float | int = 0.02

    def __post_init__(self, **kwargs):
        self.pixel_range = [float(v) for v in self.pixel_range]
        if self.vq_embed_dim is None:
            self.vq_embed_dim = self.latent_channels
        super().__post_init__(**kwargs)
        self.validate_vq_fields()

    @property
    def codebook_size(self) -> int:
        """Number of distinct token ids (K)."""
        return self.num_vq_embeddings

    def validate_vq_fields(self) -> None:
        """Checks the shared fields. Subclasses call it from their own validation."""
        for name in ("in_channels", "out_channels", "latent_channels", "num_vq_embeddings", "vq_embed_dim"):
            value = getattr(self, name)
            if value < 1:
                raise config_error(name, "a positive integer", value, f"Set `{name}` to at least 1.")
        if len(self.pixel_range) != 2 or self.pixel_range[0] >= self.pixel_range[1]:
            raise config_error(
                "pixel_range", "two numbers (low, high) with low < high", self.pixel_range, "Use e.g. (-1.0, 1.0)."
            )
        if self.commitment_cost < 0:
            raise config_error("commitment_cost", "a number >= 0", self.commitment_cost, "The usual β is 0.25.")
        if self.codebook_loss_weight < 0:
            raise config_error("codebook_loss_weight", "a number >= 0", self.codebook_loss_weight, "Use 1.0.")
        if self.quantizer_chunk_size < 1:
            raise config_error(
                "quantizer_chunk_size", "a positive integer", self.quantizer_chunk_size, "Use e.g. 8192."
            )
