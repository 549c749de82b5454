"""The quantizer interface every hf-vq quantizer implements, and the factory that builds one from a config.

A quantizer maps encoder outputs `z` of shape (B, D, h, w) to codes of the same shape and token ids of shape
(B, h, w). It is a module called `quantize` on the model (diffusers' name), and it answers two call styles:

- `quantizer(z)` returns diffusers' tuple `(z_q, loss, (perplexity, None, indices))`, so pipelines written for
  `diffusers.VQModel` (aMUSEd's `vqvae.quantize(latents)[2][2]`, ...) run unchanged;
- `quantizer(z, return_dict=True)` returns a [`QuantizerOutput`] with every loss term and statistic named.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class QuantizerOutput(ModelOutput):
    r"""
    Args:
        quantized (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)`):
            The codes, with the gradient estimator of the quantizer attached (straight-through by default).
        indices (`torch.LongTensor` of shape `(batch_size, height, width)`):
            Token ids in `[0, codebook_size)`.
        loss (`torch.FloatTensor` of shape `()`):
            Sum of the quantizer's weighted loss terms.
        codebook_loss (`torch.FloatTensor` of shape `()`):
            Weighted codebook term `‖sg[z] − e‖²` (trains the codebook only).
        commitment_loss (`torch.FloatTensor` of shape `()`):
            Weighted commitment term `β‖z − sg[e]‖²` (trains the encoder only).
        perplexity (`torch.FloatTensor` of shape `()`):
            `exp(entropy)` of the batch's code histogram: the effective number of codes in use.
        codebook_usage (`torch.FloatTensor` of shape `()`):
            Fraction of the codebook used at least once in the batch.
    """

    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_usage: torch.FloatTensor | None = None


class BaseQuantizer(nn.Module):
    """What the models rely on. Subclasses implement `quantize_latents`, `indices_to_codes` and `reset_parameters`."""

    codebook_size: int
    embed_dim: int

    def quantize_latents(self, latents: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Token ids (B, h, w) -> codes (B, D, h, w), without any gradient estimator."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Initialises every parameter and buffer; called by the model's `_init_weights` (also on the meta device)."""
        raise NotImplementedError

    def forward(self, latents: torch.Tensor, return_dict: bool = False):
        output = self.quantize_latents(latents)
        if return_dict:
            return output
        return output.quantized, output.loss, (output.perplexity, None, output.indices)

    def get_codebook_entry(self, indices: torch.LongTensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """diffusers' lookup: ids of any layout plus the `(B, h, w, D)` shape to arrange them in -> (B, D, h, w)."""
        if shape is not None:
            indices = indices.reshape(shape[:-1])
        return self.indices_to_codes(indices)


def codebook_statistics(indices: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity and fraction of codes used, from the ids of one batch."""
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1.0)
    perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
    usage = (counts > 0).float().mean()
    return perplexity, usage


def build_quantizer(config) -> BaseQuantizer:
    """Builds the quantizer named by `config.quantizer_type`, unpacking the config's fields in one place."""
    if config.quantizer_type == "vq":
        from .quantizer_vq import VectorQuantizer

        return VectorQuantizer(
            num_embeddings=config.num_vq_embeddings,
            embed_dim=config.vq_embed_dim,
            commitment_cost=config.commitment_cost,
            codebook_loss_weight=config.codebook_loss_weight,
            beta_placement=config.beta_placement,
            chunk_size=config.quantizer_chunk_size,
        )
    raise ValueError(f"Unknown `quantizer_type` {config.quantizer_type!r}; expected one of ('vq',).")
