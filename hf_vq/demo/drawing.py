"""The pictures of the demo, drawn with numpy and PIL: one colour per code, a token grid laid over its image, and an
error heat map. No Gradio here, so that what the browser shows can be tested as plain arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

# Small images are scaled up by a whole factor (nearest neighbour, so pixels stay pixels) towards this many pixels on
# their shorter side: a 16-px image with 4x4 tokens would otherwise show cells too small to see or click.
DISPLAY_SIDE = 384
# The token colours cover this much of the image below them: enough to tell codes apart, not to hide the photo.
OVERLAY_ALPHA = 0.55
# Cell borders are drawn when a cell is at least this many display pixels wide (else they would hide the colours).
MIN_BORDERED_CELL = 8
# The heat map's colour ramp, from no error to the largest: black, purple, orange, pale yellow.
HEAT_RAMP = np.array([[0, 0, 4], [120, 28, 109], [237, 105, 37], [252, 255, 164]], dtype=np.float64)


def code_colours(codebook_size: int) -> np.ndarray:
    """One RGB colour per code, `uint8` `(K, 3)`: hues a golden angle apart, so that neighbouring ids (which need not
    mean neighbouring things) get distant colours, with saturation and value varied so that codes a full turn
    apart differ too. The same code always gets the same colour."""
    codes = np.arange(codebook_size, dtype=np.float64)
    golden = (math.sqrt(5) - 1) / 2
    hue = (codes * golden) % 1.0
    saturation = 0.55 + 0.45 * ((codes * golden * golden * 7) % 1.0)
    value = 0.75 + 0.25 * ((codes * golden * 3) % 1.0)
    hsv = np.stack([hue, saturation, value], axis=-1)[None] * 255.0
    return np.asarray(Image.fromarray(hsv.round().astype(np.uint8), mode="HSV").convert("RGB"))[0]


def display_scale(height: int, width: int) -> int:
    """How many times a `height` x `width` image is scaled up for display (at least 1)."""
    return max(1, DISPLAY_SIDE // max(1, min(height, width)))


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """`uint8` `(C, H, W)` (C = 1 or 3) -> `uint8` `(H, W, 3)`."""
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def heat_map(image: torch.Tensor, reconstruction: torch.Tensor) -> tuple[Image.Image, int]:
    """Where a reconstruction differs from its input: the absolute difference, averaged over channels, through
    [`HEAT_RAMP`] scaled to the largest difference, and that largest difference in grey levels (0 to 255).

    Args:
        image, reconstruction (`torch.Tensor` of dtype `uint8` and shape `(C, H, W)`): the 8-bit images compared.
    """
    difference = (image.double() - reconstruction.double()).abs().mean(dim=0).numpy()  # (H, W) in [0, 255]
    peak = float(difference.max())
    unit = difference / peak if peak > 0 else difference
    stops = np.linspace(0.0, 1.0, len(HEAT_RAMP))
    rgb = np.stack([np.interp(unit, stops, HEAT_RAMP[:, c]) for c in range(3)], axis=-1)
    picture = Image.fromarray(rgb.round().astype(np.uint8))
    scale = display_scale(*difference.shape)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture, round(peak)


@dataclass(frozen=True)
class TokenGrid:
    """How a grid of token ids lies over the displayed picture: `rows` x `columns` cells of `cell_height` x
    `cell_width` display pixels from the top-left corner. A 1-D sequence of ids is drawn as rows of cells too."""

    rows: int
    columns: int
    cell_height: float
    cell_width: float

    def cell_at(self, x: float, y: float) -> tuple[int, int]:
        """The `(row, column)` of the cell under display pixel `(x, y)` (clamped to the grid)."""
        row = min(self.rows - 1, max(0, int(y // self.cell_height)))
        column = min(self.columns - 1, max(0, int(x // self.cell_width)))
        return row, column


def sequence_grid_shape(length: int) -> tuple[int, int]:
    """Rows and columns that show a 1-D sequence of `length` ids as a near-square block (row-major)."""
    columns = math.ceil(math.sqrt(length))
    return math.ceil(length / columns), columns


def draw_token_map(ids: np.ndarray, codebook_size: int, image: torch.Tensor | None) -> tuple[Image.Image, TokenGrid]:
    """The token ids of one level (and stage) drawn as coloured cells, one colour per code ([`code_colours`]).

    Args:
        ids (`np.ndarray` of shape `(h, w)` or `(n,)`): the ids of one image: a grid, or a 1-D sequence.
        codebook_size (`int`): K, for the colours.
        image (`torch.Tensor` of dtype `uint8` and shape `(C, H, W)`, *optional*): the image the grid covers; its
            cells are laid over it. `None` (a 1-D sequence, which covers no region): the cells alone.

    Returns:
        The picture, and the [`TokenGrid`] that maps a display pixel back to its cell.
    """
    colours = code_colours(codebook_size)
    if ids.ndim == 1:
        rows, columns = sequence_grid_shape(len(ids))
        padded = np.full(rows * columns, -1, dtype=np.int64)
        padded[: len(ids)] = ids
        cells = np.where(padded[:, None] >= 0, colours[padded.clip(0)], 255).reshape(rows, columns, 3)
        side = max(MIN_BORDERED_CELL * 3, DISPLAY_SIDE // max(rows, columns))
        picture = Image.fromarray(cells.astype(np.uint8)).resize((columns * side, rows * side), Image.NEAREST)
        grid = TokenGrid(rows, columns, float(side), float(side))
    else:
        rows, columns = ids.shape
        height, width = image.shape[-2:]
        scale = display_scale(height, width)
        size = (width * scale, height * scale)
        cells = Image.fromarray(colours[ids]).resize(size, Image.NEAREST)
        photo = Image.fromarray(to_hwc(image)).resize(size, Image.NEAREST)
        picture = Image.blend(photo, cells, OVERLAY_ALPHA)
        grid = TokenGrid(rows, columns, size[1] / rows, size[0] / columns)
    if min(grid.cell_height, grid.cell_width) >= MIN_BORDERED_CELL:
        draw = ImageDraw.Draw(picture)
        for row in range(1, grid.rows):
            y = round(row * grid.cell_height)
            draw.line([(0, y), (picture.width, y)], fill=(255, 255, 255), width=1)
        for column in range(1, grid.columns):
            x = round(column * grid.cell_width)
            draw.line([(x, 0), (x, picture.height)], fill=(255, 255, 255), width=1)
    return picture, grid


def enlarge(image: torch.Tensor) -> Image.Image:
    """`uint8` `(C, H, W)` -> RGB PIL image scaled up like the token map (nearest neighbour), for display."""
    scale = display_scale(*image.shape[-2:])
    picture = Image.fromarray(to_hwc(image))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


__all__ = [
    "DISPLAY_SIDE",
    "TokenGrid",
    "code_colours",
    "display_scale",
    "draw_token_map",
    "enlarge",
    "heat_map",
    "sequence_grid_shape",
    "to_hwc",
]
