"""Images in and out: decoding to RGB, resizing and cropping, tensors in a model's pixel range, 8-bit conversion,
and the inputs-over-reconstructions grids.

One implementation of each step, shared by the training stream (`sources.py`), `hf-vq evaluate`, the training
monitor and the everyday commands, so that an image is prepared and measured the same way everywhere:

- decode to RGB: EXIF rotation applied, palette and alpha composited on white, 16-bit samples rescaled;
- resize the shorter side (PIL bicubic, antialiased when shrinking), then a center crop;
- 8-bit images are `uint8` `(B, C, H, W)` tensors, the values a saved PNG holds; [`to_uint8`] and [`from_uint8`]
  map them to and from a model's `pixel_range`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

# ----------------------------------------------------------------------------------------------------------------
# Decoding


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: EXIF rotation applied, palette and alpha composited on white, 16-bit scaled."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit (or 32-bit / float) grayscale: PIL's convert("L") clips at 255 instead of rescaling
        array = np.asarray(image, dtype=np.float64)
        peak = array.max(initial=0.0)
        if image.mode == "F":
            top = 1.0 if peak <= 1.0 else 255.0
        else:
            top = 255.0 if image.mode == "I" and peak <= 255 else 65535.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_image(value: Any) -> Image.Image:
    """Decodes one record's image (undecoded `{"bytes", "path"}`, bytes, a path, a PIL image or an array) to RGB.

    Raises `OSError`/`ValueError` on anything that is not a readable image.
    """
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        image = Image.open(io.BytesIO(value))
    elif isinstance(value, (str, os.PathLike)):
        image = Image.open(value)
    elif isinstance(value, Image.Image):
        image = value
    elif isinstance(value, np.ndarray):
        if value.dtype == np.uint16:
            value = (value.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
        elif value.dtype != np.uint8:
            value = np.clip(np.asarray(value, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(value)
    else:
        raise ValueError(f"not an image: {type(value).__name__}")
    image.load()  # decode now, so a truncated file fails here and not later
    if image.width < 1 or image.height < 1:
        raise ValueError("empty image")
    return to_rgb(image)


# ----------------------------------------------------------------------------------------------------------------
# Geometry


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Scales `image` so that its shorter side is `size` pixels (bicubic, antialiased when shrinking)."""
    scale = size / min(image.size)
    if scale == 1.0:
        return image
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    return image.resize((width, height), Image.BICUBIC, reducing_gap=3.0)


def center_crop(image: Image.Image, width: int, height: int | None = None) -> Image.Image:
    """The `width` x `height` (default: square) window in the middle of `image`, rounding the offsets down."""
    height = width if height is None else height
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


# ----------------------------------------------------------------------------------------------------------------
# Tensors and 8-bit images


def to_tensor(image: Image.Image, pixel_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """RGB PIL image `(H, W, 3)` uint8 -> `(3, H, W)` float32 mapped linearly from [0, 255] to `pixel_range`."""
    low, high = pixel_range
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return torch.from_numpy(array * (high - low) + low)


def to_uint8(pixel_values: torch.Tensor, pixel_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """Model-range floats `(..., C, H, W)` -> `uint8` in `[0, 255]`: clamp, scale, round to the nearest level."""
    low, high = float(pixel_range[0]), float(pixel_range[1])
    unit = ((pixel_values.detach().float() - low) / (high - low)).clamp(0.0, 1.0)
    return (unit * 255.0).round().to(torch.uint8)


def from_uint8(images: torch.Tensor, pixel_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """`uint8` `(..., C, H, W)` -> float32 in the model's `pixel_range` (the inverse of [`to_uint8`])."""
    low, high = float(pixel_range[0]), float(pixel_range[1])
    return images.float() / 255.0 * (high - low) + low


def prepare_image(image: Image.Image, image_size: int | None = None, multiple_of: int = 1) -> torch.Tensor:
    """RGB PIL image -> `uint8` `(3, H, W)`.

    With `image_size`: shorter side resized to it, then a center square crop (the evaluation protocol).
    Without: the image keeps its scale and is center-cropped to sides divisible by `multiple_of`.
    """
    if image_size is not None:
        image = center_crop(resize_shorter_side(image, image_size), image_size)
    width, height = (image.width // multiple_of) * multiple_of, (image.height // multiple_of) * multiple_of
    if width < 1 or height < 1:
        raise ValueError(
            f"The image ({image.width}x{image.height}) is smaller than the downsampling factor {multiple_of}; "
            "pass a larger --resolution."
        )
    if (width, height) != image.size:
        image = center_crop(image, width, height)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def check_image_files(paths: list[str | os.PathLike]) -> None:
    """Fails, before anything is written, on paths that are missing, folders or not decodable images, naming each
    (up to five) and why; decodes each once, so truncated files are caught too."""
    problems = []
    for path in map(Path, paths):
        if not path.exists():
            problems.append(f"{path}: no such file")
        elif path.is_dir():
            problems.append(f"{path}: a folder, not an image file")
        else:
            try:
                decode_image(path)
            except (OSError, ValueError) as error:
                problems.append(f"{path}: not an image PIL can read ({type(error).__name__}: {error})")
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ValueError(
            f"{len(problems)} of the {len(paths)} input(s) cannot be used: {'; '.join(problems[:5])}{more}. Give "
            "image files (PNG, JPEG, WebP, ...)."
        )


def load_image(path: str | os.PathLike, image_size: int | None = None, multiple_of: int = 1) -> torch.Tensor:
    """Reads an image file as `uint8` `(3, H, W)` (see [`prepare_image`])."""
    return prepare_image(decode_image(Path(path)), image_size, multiple_of)


def to_pil(image: torch.Tensor) -> Image.Image:
    """`uint8` `(C, H, W)` (C = 1 or 3) -> PIL image."""
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


# ----------------------------------------------------------------------------------------------------------------
# Grids


def side_by_side(*images: torch.Tensor, gap: int = 4) -> Image.Image:
    """`uint8` `(C, H, W)` images, left to right and top-aligned, `gap` white pixels apart."""
    height = max(image.shape[1] for image in images)
    width = sum(image.shape[2] for image in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    left = 0
    for image in images:
        canvas.paste(to_pil(image).convert("RGB"), (left, 0))
        left += image.shape[2] + gap
    return canvas


def comparison_grid(
    inputs: torch.Tensor, reconstructions: torch.Tensor, columns: int | None = None, gap: int = 4
) -> Image.Image:
    """Rows of inputs, each followed by the row of their reconstructions; `uint8` `(B, C, H, W)` each.

    Args:
        columns (`int`, *optional*): images per row; defaults to all of them (one row of inputs over one row of
            reconstructions).
        gap (`int`, *optional*, defaults to 4): white pixels between images and between rows.
    """
    if inputs.shape != reconstructions.shape:
        raise ValueError(
            f"`inputs` and `reconstructions` must have the same shape; got {tuple(inputs.shape)} and "
            f"{tuple(reconstructions.shape)}."
        )
    columns = min(columns or len(inputs), len(inputs))
    rows = []
    for start in range(0, len(inputs), columns):
        rows.append(side_by_side(*inputs[start : start + columns], gap=gap))
        rows.append(side_by_side(*reconstructions[start : start + columns], gap=gap))
    width = max(row.width for row in rows)
    canvas = Image.new("RGB", (width, sum(row.height for row in rows) + gap * (len(rows) - 1)), (255, 255, 255))
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height + gap
    return canvas


def image_grid(images: torch.Tensor, columns: int, gap: int = 2) -> Image.Image:
    """`uint8` `(B, C, H, W)` images -> one PIL image, row-major, `gap` white pixels between them."""
    count, channels, height, width = images.shape
    rows = math.ceil(count / columns)
    grid = torch.full((channels, rows * (height + gap) - gap, columns * (width + gap) - gap), 255, dtype=torch.uint8)
    for i, image in enumerate(images.cpu()):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        grid[:, top : top + height, left : left + width] = image
    return to_pil(grid)


__all__ = [
    "center_crop",
    "check_image_files",
    "comparison_grid",
    "decode_image",
    "from_uint8",
    "image_grid",
    "load_image",
    "prepare_image",
    "resize_shorter_side",
    "side_by_side",
    "to_pil",
    "to_rgb",
    "to_tensor",
    "to_uint8",
]
