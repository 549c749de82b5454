"""Lookup-free quantisation (Yu et al. 2023, MAGVIT-v2, https://arxiv.org/abs/2310.05737 §3.1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .modeling_outputs import QuantizerOutput
from .quantizer_base import (
    BaseQuantizer,
    channels_first,
    entropy_loss,
    flatten_latents,
    project,
)


class LookupFreeQuantizer(BaseQuantizer):
    """Quantizes each of `log2(K)` channels to its sign (±1): the token id is the number whose bits are the signs.

    The implicit codebook is `{-1, 1}^log2(K)`, so there is no nearest-code search and no codebook loss; the
    commitment term `β‖z − sg[q]‖²` and the entropy term (paper eq. 5, weight `entropy_loss_weight`, 0.1 in the
    paper) keep the encoder near the corners and spread the batch over them. Latents of `embed_dim` channels are
    projected to `log2(K)` channels and back (`project_in` / `project_out`) when the two differ. Bit `i` of an id is
    channel `i` (1 where the channel is positive).
    """

    def __init__(
        self,
        *,
        codebook_size: int,
        embed_dim: int,
        commitment_cost: float = 0.25,
        entropy_loss_weight: float = 0.1,
        entropy_temperature: float = 0.01,
        usage_window: int = 100,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.bits = int(math.log2(codebook_size))
        self.embed_dim = embed_dim
        self.commitment_cost = commitment_cost
        self.entropy_loss_weight = entropy_loss_weight
        self.entropy_temperature = entropy_temperature
        if embed_dim != self.bits:
            self.project_in = nn.Linear(embed_dim, self.bits)
            self.project_out = nn.Linear(self.bits, embed_dim)
        self.register_health_buffers(codebook_size, usage_window)

    def reset_parameters(self) -> None:
        # project_in / project_out are nn.Linear, initialised by the model's `_init_weights`.
        self.reset_health()

    def _bit_values(self, device: torch.device) -> torch.Tensor:
        return 2 ** torch.arange(self.bits, device=device)

    def all_codes(self, device: torch.device) -> torch.Tensor:
        """The (K, log2 K) implicit codebook of ±1 corners, row i being the code of id i."""
        ids = torch.arange(self.codebook_size, device=device)
        return ((ids.unsqueeze(-1) // self._bit_values(device)) % 2).float() * 2 - 1

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        bits = (indices.unsqueeze(-1) // self._bit_values(indices.device)) % 2  # (B, h, w) -> (B, h, w, bits)
        codes = project(getattr(self, "project_out", None), bits.float() * 2 - 1)
        return channels_first(codes)

    def quantize_latents(self, latents: torch.Tensor) -> QuantizerOutput:
        input_dtype = latents.dtype
        with torch.autocast(device_type=latents.device.type, enabled=False):
            batch, dim, height, width = latents.shape
            flat = flatten_latents(latents, getattr(self, "project_in", None))  # -> (N, bits)
            signs = torch.where(flat > 0, 1.0, -1.0)
            indices = ((flat.detach() > 0).long() * self._bit_values(flat.device)).sum(-1).view(batch, height, width)
            commitment_loss = self.commitment_cost * F.mse_loss(flat, signs)
            if self.entropy_loss_weight > 0 and flat.requires_grad:
                # ‖z − c‖² = ‖z‖² + bits − 2 z·c: only the last term differs between codes
                logits = 2 * flat @ self.all_codes(flat.device).t()  # (N, K)
                entropy = self.entropy_loss_weight * entropy_loss(logits, self.entropy_temperature)
            else:
                entropy = flat.new_zeros(())
            if latents.requires_grad:
                estimated = flat + (signs - flat).detach()  # straight-through estimator
                quantized = project(getattr(self, "project_out", None), estimated)
                quantized = channels_first(quantized.view(batch, height, width, dim))
            else:
                quantized = self.indices_to_codes(indices)
            return self.output_with_statistics(
                quantized, indices, input_dtype, flat, commitment_loss=commitment_loss, entropy_loss=entropy
            )
