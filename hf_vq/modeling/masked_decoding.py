"""Parallel decoding of a masked prior (MaskGIT, Chang et al. 2022, arXiv:2202.04200), as functions of tensors: the
schedules, one decoding step and the Halton order. `VQPriorForMaskedLM.generate_indices` runs them around its
forward; they know nothing of the model, so a test can hold one step against diffusers' `AmusedScheduler.step`.

A decoding of T steps starts with N ids masked. At step t (0-based) every masked position gets an id sampled from
the model; then the ⌊cos(π/2 · (t+1)/T) · N⌋ least confident of them are masked again (at least one revealed per
step, at least one left masked until the last step, which reveals all). Confidence is MaskGIT's: the log-probability
of the sampled id plus Gumbel noise scaled by the choice temperature `τ · (1 − (t+1)/T)`, so early steps pick more
at random. The Halton order (Besnier et al. 2025, arXiv:2503.17076) instead reveals positions in a fixed
low-discrepancy spatial order, spreading each step's ids over the image.
"""

from __future__ import annotations

import math

import torch

DECODING_ORDERS = ("confidence", "halton")
GUIDANCE_SCHEDULES = ("constant", "linear")


def masking_fraction(ratio: torch.Tensor | float, schedule: str = "cosine"):
    """The fraction of ids masked at `ratio` in [0, 1] of the way through: `cos(π/2 · ratio)` or `1 − ratio`."""
    if schedule == "cosine":
        return torch.cos(ratio * math.pi / 2) if torch.is_tensor(ratio) else math.cos(ratio * math.pi / 2)
    return 1 - ratio


def num_left_masked(step: int, num_steps: int, total: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """`(B, 1)` ids left masked after step `step` of `num_steps`: ⌊cos(π/2 · (step+1)/num_steps) · total⌋, at least 1
    and at most `masked − 1` (one id revealed per step), 0 after the last step.

    Args:
        total (`torch.LongTensor` of shape `(B, 1)`): ids masked when decoding started (N, per row).
        masked (`torch.LongTensor` of shape `(B, 1)`): ids masked now.
    """
    if step >= num_steps - 1:
        return torch.zeros_like(masked)
    left = torch.floor(total * masking_fraction((step + 1) / num_steps)).long()
    return torch.minimum(left.clamp(min=1), masked - 1).clamp(min=0)


def guidance_at(step: int, num_steps: int, guidance_scale: float, schedule: str) -> float:
    """The guidance scale of step `step`: constant, or a linear ramp from 1 (no guidance) at the first step to
    `guidance_scale` at the last (the ramp of Besnier et al.'s MaskGIT)."""
    if schedule == "constant" or num_steps == 1:
        return guidance_scale
    return 1.0 + (guidance_scale - 1.0) * step / (num_steps - 1)


def gumbel_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard Gumbel noise `−log(−log u)`, u ~ U(0, 1) clamped away from 0 (drawn as `AmusedScheduler` draws it)."""
    uniform = torch.zeros(shape, device=device).uniform_(0, 1, generator=generator)
    return -torch.log((-torch.log(uniform.clamp(1e-20))).clamp(1e-20))


def decoding_step(
    probabilities: torch.Tensor,
    ids: torch.LongTensor,
    masked: torch.BoolTensor,
    num_masked_after: torch.LongTensor,
    mask_token_id: int,
    *,
    choice_temperature: float = 0.0,
    order_rank: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.LongTensor, torch.BoolTensor]:
    r"""
    One decoding step: sample an id at every position, keep the given ids, mask again the `num_masked_after` least
    confident of the newly sampled ones.

    Args:
        probabilities (`torch.Tensor` of shape `(B, L, V)`):
            The distribution to sample from at each position (guidance, temperature, top-k and the position's id
            range already applied).
        ids (`torch.LongTensor` of shape `(B, L)`):
            The current ids, `mask_token_id` where `masked`.
        masked (`torch.BoolTensor` of shape `(B, L)`):
            The positions still to decode.
        num_masked_after (`torch.LongTensor` of shape `(B, 1)`):
            How many positions stay masked after this step ([`num_left_masked`]).
        choice_temperature (`float`, *optional*, defaults to 0):
            Scale of the Gumbel noise added to the confidence (confidence order only).
        order_rank (`torch.Tensor` of shape `(L,)`, *optional*):
            A fixed decoding order (rank 0 first), e.g. [`halton_ranks`]; replaces the confidence.
        generator (`torch.Generator`, *optional*):
            For the ids (drawn first, at every position) and then the Gumbel noise, in that order.

    Returns:
        `(ids, masked)` after the step.
    """
    batch, length, vocabulary = probabilities.shape
    draws = torch.multinomial(probabilities.reshape(-1, vocabulary), 1, generator=generator).view(batch, length)
    sampled = torch.where(masked, draws, ids)
    if order_rank is None:
        confidence = probabilities.gather(2, sampled[..., None])[..., 0].clamp(1e-20).log()
        confidence = confidence + choice_temperature * gumbel_noise(confidence.shape, generator, confidence.device)
    else:
        confidence = -order_rank.to(probabilities.dtype)[None].expand(batch, -1)
    confidence = torch.where(masked, confidence, math.inf)  # given ids are never masked again
    cut = confidence.sort(dim=1).values.gather(1, num_masked_after)  # the (k+1)-th smallest confidence
    still_masked = confidence < cut
    return torch.where(still_masked, mask_token_id, sampled), still_masked


def _radical_inverse(index: int, base: int) -> float:
    """The van der Corput / Halton coordinate of `index` in `base` (digits mirrored after the point)."""
    value, scale = 0.0, 1.0 / base
    while index:
        index, digit = divmod(index, base)
        value += digit * scale
        scale /= base
    return value


def halton_grid_order(height: int, width: int) -> list[int]:
    """Raster positions of an `height x width` grid in the order the 2-D Halton sequence (bases 2 and 3) first visits
    their cells; a 1-row grid is a sequence, ordered by the van der Corput sequence in base 2."""
    total, order, seen = height * width, [], set()
    index = 1
    while len(order) < total and index <= 64 * total + 64:
        col = int(_radical_inverse(index, 2) * width)
        row = int(_radical_inverse(index, 3) * height) if height > 1 else 0
        cell = row * width + col
        if cell not in seen:
            seen.add(cell)
            order.append(cell)
        index += 1
    return order + [cell for cell in range(total) if cell not in seen]  # never reached for grids of real sizes


def halton_ranks(grid_shapes: list[tuple[int, int]], depths: list[int]) -> torch.Tensor:
    """`(L,)` decoding rank of each position of a flattened layout (levels coarse to fine, raster order, the stages
    of a position together): within a level, the Halton order of its grid; across levels, interleaved by the
    fraction of the level decoded (coarse level first on ties); a position's stages one after the other.

    Args:
        grid_shapes (`list[tuple[int, int]]`): each level's `(rows, cols)` (`(1, length)` for a 1-D level).
        depths (`list[int]`): each level's number of residual stages.
    """
    keys = []
    for level, ((height, width), depth) in enumerate(zip(grid_shapes, depths)):
        cells = height * width
        place = [0] * cells
        for rank, cell in enumerate(halton_grid_order(height, width)):
            place[cell] = rank
        for cell in range(cells):
            keys.extend((place[cell] / cells, level, stage) for stage in range(depth))
    ordered = sorted(range(len(keys)), key=keys.__getitem__)
    ranks = torch.empty(len(keys), dtype=torch.long)
    ranks[torch.tensor(ordered)] = torch.arange(len(keys))
    return ranks


__all__ = [
    "DECODING_ORDERS",
    "GUIDANCE_SCHEDULES",
    "decoding_step",
    "guidance_at",
    "gumbel_noise",
    "halton_grid_order",
    "halton_ranks",
    "masking_fraction",
    "num_left_masked",
]
