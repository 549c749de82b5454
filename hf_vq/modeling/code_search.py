"""Nearest-code search: the hot loop of every codebook quantizer, kept in one place to be made fast."""

from __future__ import annotations

import torch

# Most fp32 scores held at once: 2**25 floats = 128 MiB. At N=65536, K=16384 that is 3% of the 4 GiB distance
# matrix `torch.cdist` materialises, and a (2048, 16384) x 256 matmul per chunk still fills a GPU.
MAX_SCORES_PER_CHUNK = 2**25


@torch.no_grad()
def nearest_code(latents: torch.Tensor, codebook: torch.Tensor, chunk_size: int) -> torch.LongTensor:
    """Index of the nearest code (L2) for each row of `latents` (N, D), searching `codebook` (K, D) in chunks.

    ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖², and ‖z‖² is the same for every code of a row, so the argmin only needs
    ‖e‖² − 2 z·e: one fused `addmm` per chunk, with no square root, clamp or (N, K) matrix. A chunk holds at most
    `chunk_size` rows and at most `MAX_SCORES_PER_CHUNK` scores, so peak memory stays bounded for any codebook
    size. The ids do not depend on the chunking. Ties (and near-ties below fp32 rounding) may resolve to either
    of the tied codes, as with any fp32 distance.

    Args:
        latents (`torch.FloatTensor` of shape `(N, D)`): vectors to quantize, fp32.
        codebook (`torch.FloatTensor` of shape `(K, D)`): the codes, fp32.
        chunk_size (`int`): most rows scored at once.

    Returns:
        `torch.LongTensor` of shape `(N,)`: ids in `[0, K)`.
    """
    num_codes = codebook.shape[0]
    rows = max(1, min(chunk_size, MAX_SCORES_PER_CHUNK // max(num_codes, 1)))
    codebook_sq = torch.linalg.vector_norm(codebook, dim=1).square()  # (K,), without a (K, D) temporary
    codebook_t = codebook.t()
    if latents.shape[0] <= rows:  # one chunk: no output buffer, no copies (the common training batch)
        return torch.addmm(codebook_sq, latents, codebook_t, beta=1.0, alpha=-2.0).argmin(dim=1)
    indices = torch.empty(latents.shape[0], dtype=torch.long, device=latents.device)
    scores = torch.empty(rows, num_codes, dtype=latents.dtype, device=latents.device)  # reused by every chunk
    for start in range(0, latents.shape[0], rows):
        chunk = latents[start : start + rows]
        block = scores[: chunk.shape[0]]
        torch.addmm(codebook_sq, chunk, codebook_t, beta=1.0, alpha=-2.0, out=block)  # (rows, K)
        torch.argmin(block, dim=1, out=indices[start : start + chunk.shape[0]])
    return indices
