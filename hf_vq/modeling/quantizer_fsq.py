"""Finite scalar quantisation (Mentzer et al. 2023, https://arxiv.org/abs/2309.15505): no codebook to learn."""

from __future__ import annotations

import math

import torch
from torch import nn

from .modeling_outputs import QuantizerOutput
from .quantizer_base import BaseQuantizer, channels_first, flatten_latents, project


class FiniteScalarQuantizer(BaseQuantizer):
    """Bounds each of `len(levels)` channels with a tanh and rounds it to one of `levels[i]` values in [-1, 1].

    The implicit codebook is the grid of all level combinations (`prod(levels)` codes), so every code is reachable
    and there is no codebook or commitment loss; gradients cross the rounding straight through (paper §3). Latents
    of `embed_dim` channels are projected to `len(levels)` channels and back by `project_in` / `project_out`
    when the two differ. Token id = mixed-radix number of the per-channel levels (first channel least significant).
    """

    def __init__(self, *, levels: list[int], embed_dim: int, usage_window: int = 100):
        super().__init__()
        self.levels = list(levels)
        self.codebook_size = math.prod(self.levels)
        self.embed_dim = embed_dim
        if embed_dim != len(self.levels):
            self.project_in = nn.Linear(embed_dim, len(self.levels))
            self.project_out = nn.Linear(len(self.levels), embed_dim)
        self.register_health_buffers(self.codebook_size, usage_window)

    def reset_parameters(self) -> None:
        # project_in / project_out are nn.Linear, initialised by the model's `_init_weights`.
        self.reset_health()

    def _grid(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        levels = torch.tensor(self.levels, device=device)
        basis = torch.cumprod(torch.tensor([1, *self.levels[:-1]], device=device), dim=0)
        return levels, basis

    def bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """tanh-bounds each channel so that rounding gives exactly `levels[i]` values (paper appendix A.1)."""
        levels = torch.tensor(self.levels, device=z.device, dtype=z.dtype)
        half = (levels - 1) * (1 + eps) / 2
        offset = (1 - levels % 2) * 0.5  # even level counts are shifted by half a step
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        levels, basis = self._grid(indices.device)
        digits = (indices.unsqueeze(-1) // basis) % levels  # (B, h, w) -> (B, h, w, len(levels))
        half_width = (levels // 2).float()
        codes = (digits.float() - half_width) / half_width
        codes = project(getattr(self, "project_out", None), codes)
        return channels_first(codes)

    def quantize_latents(self, latents: torch.Tensor) -> QuantizerOutput:
        input_dtype = latents.dtype
        with torch.autocast(device_type=latents.device.type, enabled=False):
            batch, dim, height, width = latents.shape
            flat = flatten_latents(latents, getattr(self, "project_in", None))  # -> (N, len(levels))
            bounded = self.bound(flat)
            rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through rounding
            levels, basis = self._grid(flat.device)
            half_width = (levels // 2).float()
            indices = ((rounded.detach() + half_width).round().long() * basis).sum(dim=-1).view(batch, height, width)
            if latents.requires_grad:
                codes = project(getattr(self, "project_out", None), rounded / half_width)
                quantized = channels_first(codes.view(batch, height, width, dim))
            else:
                quantized = self.indices_to_codes(indices)  # the grid point exactly, as decoding ids gives it
            return self.output_with_statistics(quantized, indices, input_dtype, flat)
