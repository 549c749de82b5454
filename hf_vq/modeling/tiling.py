"""Tiled encode and decode for images larger than a model was trained on, with blended overlaps.

A convolutional tokenizer runs on any image size, but its memory grows with the area and its self-attention
layers see the whole image at once, which is not what they were trained on. Tiling cuts the input into overlapping
tiles of the training size, runs the model on each, and blends the overlaps with linear ramps so that no seam shows:
every output position is a convex combination of the tiles that cover it, weighted by its distance from each tile's
edge. Tiles are aligned to the downsampling factor, so token grids of neighbouring tiles line up exactly.

Each tile is normalised with its own GroupNorm statistics (as in diffusers' tiled VAE decode), so a tiled result
is close to, not equal to, the untiled one; the blend keeps those differences from showing as seams.

Encoding blends the pre-quantisation latents and quantizes the blended result once, so the token grid of a tiled
encode has no duplicated or conflicting tokens.
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


def _tile_geometry(model, tile_sample_size: int | None, overlap: float) -> tuple[int, int]:
    factor = model.downsampling_factor
    tile = tile_sample_size if tile_sample_size is not None else model.config.sample_size
    if tile % factor or tile < 2 * factor:
        raise ValueError(
            f"`tile_sample_size` must be a multiple of the downsampling factor {factor} and at least {2 * factor}; "
            f"got {tile}. Try {max(2, round(tile / factor)) * factor}."
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"`overlap` is a fraction of the tile in [0, 1); got {overlap}. Try 0.25.")
    overlap_pixels = round(tile * overlap / factor) * factor
    return tile, overlap_pixels


def tiled_encode(model, pixel_values: torch.Tensor, tile_sample_size: int | None = None, overlap: float = 0.25):
    """`model.encode(pixel_values)` computed tile by tile: latents are blended, then quantized once.

    Args:
        model: a `VQPreTrainedModel`.
        pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
            Images in `config.pixel_range`; height and width divisible by the downsampling factor.
        tile_sample_size (`int`, *optional*, defaults to `model.config.sample_size`):
            Tile side in pixels, a multiple of the downsampling factor.
        overlap (`float`, *optional*, defaults to 0.25):
            Fraction of a tile shared with each neighbour.

    Returns:
        `VQEncoderOutput` with `latents`, `quantized` and `indices` for the whole image.
    """
    from .modeling_utils import VQEncoderOutput  # deferred: modeling_utils may import this module

    model._check_pixel_values(pixel_values)
    tile, overlap_pixels = _tile_geometry(model, tile_sample_size, overlap)
    factor = model.downsampling_factor
    latents = tiled_map(
        lambda piece: model.quant_conv(model.encoder(piece)),
        pixel_values,
        tile=tile,
        overlap=overlap_pixels,
        scale=1.0 / factor,
        align=factor,
    )
    quantized = model.quantize(latents, return_dict=True)
    return VQEncoderOutput(latents=latents, quantized=quantized.quantized, indices=quantized.indices)


def tiled_decode_codes(model, codes: torch.Tensor, tile_sample_size: int | None = None, overlap: float = 0.25):
    """Decodes quantized latents `(B, D, h, w)` to images `(B, C, h * f, w * f)` tile by tile.

    Tiles are `tile_sample_size / f` tokens wide and overlap by `overlap` of a tile; the decoded tiles are
    blended in pixel space.
    """
    tile, overlap_pixels = _tile_geometry(model, tile_sample_size, overlap)
    factor = model.downsampling_factor
    return tiled_map(
        model._decode_codes, codes, tile=tile // factor, overlap=overlap_pixels // factor, scale=float(factor)
    )


def tiled_decode_indices(model, indices: torch.LongTensor, tile_sample_size: int | None = None, overlap: float = 0.25):
    """`model.decode_indices(indices)` tile by tile: token ids `(B, h, w)` -> images `(B, C, h * f, w * f)`."""
    model._check_indices(indices)
    return tiled_decode_codes(model, model.quantize.indices_to_codes(indices), tile_sample_size, overlap)


__all__ = ["tile_starts", "tiled_map", "tiled_encode", "tiled_decode_codes", "tiled_decode_indices"]
