"""Nearest-code search: the hot loop of every codebook quantizer, kept in one place to be made fast."""

from __future__ import annotations

import torch


@torch.no_grad()
def nearest_code(latents: torch.Tensor, codebook: torch.Tensor, chunk_size: int) -> torch.LongTensor:
    """Index of the nearest code (L2) for each row of `latents` (N, D), searching `codebook` (K, D) in chunks.

    ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖², and ‖z‖² is the same for every code of a row, so the argmin only needs
    ‖e‖² − 2 z·e: one fused `addmm` per chunk. Peak memory is a (chunk_size, K) block instead of the (N, K)
    distance matrix `torch.cdist` materialises.
    """
    codebook_sq = codebook.square().sum(dim=1)  # (K,)
    indices = torch.empty(latents.shape[0], dtype=torch.long, device=latents.device)
    codebook_t = codebook.t()
    for start in range(0, latents.shape[0], chunk_size):
        chunk = latents[start : start + chunk_size]
        scores = torch.addmm(codebook_sq, chunk, codebook_t, beta=1.0, alpha=-2.0)  # (chunk, K)
        indices[start : start + chunk_size] = scores.argmin(dim=1)
    return indices
