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

- [`tiled_map`], [`tile_starts`], [`tile_geometry`]: the tiling itself, which knows nothing about models.
- [`TilingMixin`]: what a single-grid tokenizer ([`modeling_utils.SingleGridMixin`]) gets from it:
  `enable_tiling` / `disable_tiling`, `tiled_encode` / `tiled_decode` / `tiled_decode_indices`, and `tile_count`.

A long tiled run reports its progress through an optional `progress(done, total)` callback, called after each
tile, so that a command line can show a bar while the models stay free of any UI.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from .modeling_outputs import VQEncoderOutput

# `progress(done, total)`: called after each tile with the tiles computed so far and the tiles of this call.
ProgressCallback = Callable[[int, int], None]


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
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """Applies `function` to overlapping tiles of `inputs` (B, C, H, W) and blends the outputs.

    Args:
        function: maps a tile (B, C, t, t) to (B, C', t * scale, t * scale).
        tile (`int`): tile side in input positions.
        overlap (`int`): positions shared by neighbouring tiles, in input positions.
        scale (`float`): output side / input side (1 / f when encoding, f when decoding).
        align (`int`): tile offsets are multiples of this (the downsampling factor when encoding).
        progress (`Callable[[int, int], None]`, *optional*): called as `progress(done, total)` after each tile.
    """
    height, width = inputs.shape[-2:]
    rows = tile_starts(height, tile, overlap, align)
    cols = tile_starts(width, tile, overlap, align)
    total = len(rows) * len(cols)
    if total == 1:
        output = function(inputs)
        if progress is not None:
            progress(1, 1)
        return output
    output = weight_sum = None
    out_overlap = round(overlap * scale)
    for done, (top, left) in enumerate(itertools.product(rows, cols), start=1):
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
        if progress is not None:
            progress(done, total)
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


class TilingMixin:
    """Tiled encode and decode for a single-grid tokenizer (see [`modeling_utils.SingleGridMixin`], which
    inherits it). The model provides `config.sample_size`, `downsampling_factor`, `encoder`, `quant_conv`,
    `quantize`, `_check_pixel_values`, `_check_indices` and `_decode_codes(codes)`."""

    # (tile side in pixels or None for config.sample_size, overlap fraction) once `enable_tiling` is called.
    _tiling: tuple[int | None, float] | None = None

    def enable_tiling(self, tile_sample_size: int | None = None, overlap: float = 0.25) -> None:
        """Encode / decode images larger than `tile_sample_size` (default `config.sample_size`) tile by tile, with
        overlaps of `overlap` of a tile blended linearly, so memory stays that of one tile."""
        self._tiling = (tile_sample_size, overlap)

    def disable_tiling(self) -> None:
        self._tiling = None

    def tile_count(self, height: int, width: int, tile_sample_size: int | None = None, overlap: float = 0.25) -> int:
        """Tiles that `tiled_encode` computes for a `height` x `width` image, and `tiled_decode` for its latents
        (the same grid, in tokens): what a progress bar over a tiled run counts."""
        factor = self.downsampling_factor
        tile, overlap_pixels = tile_geometry(factor, self.config.sample_size, tile_sample_size, overlap)
        rows, cols = (tile_starts(side, tile, overlap_pixels, factor) for side in (height, width))
        return len(rows) * len(cols)

    def tiled_encode(
        self,
        pixel_values: torch.Tensor,
        tile_sample_size: int | None = None,
        overlap: float = 0.25,
        progress: ProgressCallback | None = None,
    ) -> VQEncoderOutput:
        """`encode` computed tile by tile: latents are blended, then quantized once.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
                Images in `config.pixel_range`; height and width divisible by the downsampling factor.
            tile_sample_size (`int`, *optional*, defaults to `config.sample_size`):
                Tile side in pixels, a multiple of the downsampling factor.
            overlap (`float`, *optional*, defaults to 0.25):
                Fraction of a tile shared with each neighbour.
            progress (`Callable[[int, int], None]`, *optional*):
                Called as `progress(done, total)` after each tile (`total` is `tile_count(height, width, ...)`).
        """
        self._check_pixel_values(pixel_values)
        factor = self.downsampling_factor
        tile, overlap_pixels = tile_geometry(factor, self.config.sample_size, tile_sample_size, overlap)
        latents = tiled_map(
            lambda piece: self.quant_conv(self.encoder(piece)),
            pixel_values,
            tile=tile,
            overlap=overlap_pixels,
            scale=1.0 / factor,
            align=factor,
            progress=progress,
        )
        quantized = self.quantize(latents, return_dict=True)
        return VQEncoderOutput(latents=latents, quantized=quantized.quantized, indices=quantized.indices)

    def tiled_decode(
        self,
        codes: torch.Tensor,
        tile_sample_size: int | None = None,
        overlap: float = 0.25,
        progress: ProgressCallback | None = None,
    ) -> torch.FloatTensor:
        """Quantized latents `(B, D, h, w)` to images `(B, C, h * f, w * f)`, tile by tile: tiles of
        `tile_sample_size / f` tokens overlapping by `overlap` of a tile, blended in pixel space; `progress` as in
        `tiled_encode`."""
        factor = self.downsampling_factor
        tile, overlap_pixels = tile_geometry(factor, self.config.sample_size, tile_sample_size, overlap)
        return tiled_map(
            self._decode_codes,
            codes,
            tile=tile // factor,
            overlap=overlap_pixels // factor,
            scale=float(factor),
            progress=progress,
        )

    def tiled_decode_indices(
        self,
        indices: torch.LongTensor,
        tile_sample_size: int | None = None,
        overlap: float = 0.25,
        progress: ProgressCallback | None = None,
    ) -> torch.FloatTensor:
        """`decode_indices` tile by tile: token ids `(B, h, w)` -> images `(B, C, h * f, w * f)`."""
        self._check_indices(indices)
        return self.tiled_decode(self.quantize.indices_to_codes(indices), tile_sample_size, overlap, progress)

    def _tiling_applies(self, spatial_shape, factor: int = 1) -> bool:
        if self._tiling is None or not spatial_shape:
            return False
        tile = self._tiling[0] or self.config.sample_size
        return max(spatial_shape) * factor > tile

    def _decode_codes_maybe_tiled(self, codes: torch.Tensor) -> torch.Tensor:
        if self._tiling_applies(codes.shape[-2:], factor=self.downsampling_factor):
            return self.tiled_decode(codes, *self._tiling)
        return self._decode_codes(codes)


__all__ = ["ProgressCallback", "TilingMixin", "tile_geometry", "tile_starts", "tiled_map"]
