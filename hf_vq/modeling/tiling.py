"""Tiled encode and decode for images larger than a model was trained on, with blended overlaps.

A convolutional tokenizer runs on any image size, but its memory grows with the area and its self-attention
layers see the whole image at once, which is not what they were trained on. Tiling cuts the input into overlapping
tiles of the training size, runs the model on each, and blends the overlaps with linear ramps so that no seam shows:
every output position is a convex combination of the tiles that cover it, weighted by its distance from each tile's
edge. Tiles are aligned to the downsampling factor, so token grids of neighbouring tiles line up exactly.

Each tile is normalised with its own GroupNorm statistics (as in diffusers' tiled VAE decode), so a tiled result
is close to, not equal to, the untiled one; the blend keeps those differences from showing as seams.

Encoding blends the pre-quantisation latents and quantizes the blended result once, so the token grid of a tiled
encode has no duplicated or conflicting tokens. The models' `tiled_encode` / `tiled_decode` / `tiled_decode_indices`
(`modeling_utils.SingleGridMixin`) are built on the two functions here, which know nothing about models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of length `tile` covering `[0, size)` with at least `overlap` shared between
    neighbours. Offsets are multiples of `align`; the last tile ends exactly at `size`."""
    if size <= tile:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, size - tile, stride))
    starts.append((size - tile) // align * align)
    return sorted(set(starts))


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blending weights: rising linearly over the first `overlap` positions (if `ramp_start`), falling over
    the last (if `ramp_end`), 1 elsewhere. Never zero, so every covered position has a positive total weight."""
    weights = torch.ones(length)
    if overlap > 0:
        ramp = (torch.arange(min(overlap, length)) + 0.5) / overlap
        if ramp_start:
            weights[: ramp.numel()] = torch.minimum(weights[: ramp.numel()], ramp)
        if ramp_end:
            weights[length - ramp.numel() :] = torch.minimum(weights[length - ramp.numel() :], ramp.flip(0))
    return weights


def tiled_map(
    function: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    scale: float,
    align: int = 1,
) -> torch.Tensor:
    """Applies `function` to overlapping tiles of `inputs` (B, C, H, W) and blends the outputs.

    Args:
        function: maps a tile (B, C, t, t) to (B, C', t * scale, t * scale).
        tile (`int`): tile side in input positions.
        overlap (`int`): positions shared by neighbouring tiles, in input positions.
        scale (`float`): output side / input side (1 / f when encoding, f when decoding).
        align (`int`): tile offsets are multiples of this (the downsampling factor when encoding).
    """
    height, width = inputs.shape[-2:]
    rows = tile_starts(height, tile, overlap, align)
    cols = tile_starts(width, tile, overlap, align)
    if len(rows) == 1 and len(cols) == 1:
        return function(inputs)
    output = weight_sum = None
    out_overlap = round(overlap * scale)
    for top in rows:
        for left in cols:
            piece = function(inputs[..., top : top + tile, left : left + tile])
            out_top, out_left = round(top * scale), round(left * scale)
            piece_h, piece_w = piece.shape[-2:]
            if output is None:
                out_shape = (*piece.shape[:-2], round(height * scale), round(width * scale))
                output = piece.new_zeros(out_shape, dtype=torch.float32)  # accumulate in fp32 under autocast too
                out_dtype = piece.dtype
                weight_sum = piece.new_zeros(out_shape[-2:], dtype=torch.float32)
            # Ramp only the sides that face another tile; image borders keep full weight.
            window = torch.outer(
                _ramp(piece_h, out_overlap, top > 0, top + tile < height),
                _ramp(piece_w, out_overlap, left > 0, left + tile < width),
            ).to(piece.device)
            output[..., out_top : out_top + piece_h, out_left : out_left + piece_w] += piece.float() * window
            weight_sum[out_top : out_top + piece_h, out_left : out_left + piece_w] += window
    return (output / weight_sum).to(out_dtype)


def tile_geometry(factor: int, sample_size: int, tile_sample_size: int | None, overlap: float) -> tuple[int, int]:
    """Checks a tiling request and returns `(tile side, overlap)` in pixels, both multiples of `factor`.

    Args:
        factor (`int`): the model's downsampling factor.
        sample_size (`int`): the tile side used when `tile_sample_size` is None (the model's training size).
        tile_sample_size (`int`, *optional*): tile side in pixels.
        overlap (`float`): fraction of a tile shared with each neighbour, in [0, 1).
    """
    tile = tile_sample_size if tile_sample_size is not None else sample_size
    if tile % factor or tile < 2 * factor:
        raise ValueError(
            f"`tile_sample_size` must be a multiple of the downsampling factor {factor} and at least {2 * factor}; "
            f"got {tile}. Try {max(2, round(tile / factor)) * factor}."
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"`overlap` is a fraction of the tile in [0, 1); got {overlap}. Try 0.25.")
    overlap_pixels = round(tile * overlap / factor) * factor
    return tile, overlap_pixels


__all__ = ["tile_geometry", "tile_starts", "tiled_map"]
