"""8-bit image I/O shared by `hf-vq evaluate` and the everyday commands.

Decoding and resizing reuse the training data pipeline (`hf_vq.training.data`), so a model is measured on
images prepared exactly as its evaluation images were during training: decode to RGB (EXIF rotation, alpha on
white), bicubic resize of the shorter side (antialiased when shrinking), center crop.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..training.data import decode_image, resize_shorter_side


def center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def prepare_image(image: Image.Image, image_size: int | None = None, multiple_of: int = 1) -> torch.Tensor:
    """RGB PIL image -> `uint8` `(3, H, W)`.

    With `image_size`: shorter side resized to it, then a center square crop (the evaluation protocol).
    Without: the image keeps its scale and is center-cropped to sides divisible by `multiple_of`.
    """
    if image_size is not None:
        image = center_crop(resize_shorter_side(image, image_size), image_size, image_size)
    width, height = (image.width // multiple_of) * multiple_of, (image.height // multiple_of) * multiple_of
    if width < 1 or height < 1:
        raise ValueError(
            f"The image ({image.width}x{image.height}) is smaller than the downsampling factor {multiple_of}; "
            "pass a larger --image-size."
        )
    if (width, height) != image.size:
        image = center_crop(image, width, height)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike, image_size: int | None = None, multiple_of: int = 1) -> torch.Tensor:
    """Reads an image file as `uint8` `(3, H, W)` (see [`prepare_image`])."""
    return prepare_image(decode_image(Path(path)), image_size, multiple_of)


def to_pil(image: torch.Tensor) -> Image.Image:
    """`uint8` `(C, H, W)` (C = 1 or 3) -> PIL image."""
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def side_by_side(*images: torch.Tensor, gap: int = 4) -> Image.Image:
    """`uint8` `(C, H, W)` images of equal height, left to right, on a white background."""
    height = max(image.shape[1] for image in images)
    width = sum(image.shape[2] for image in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    left = 0
    for image in images:
        canvas.paste(to_pil(image).convert("RGB"), (left, 0))
        left += image.shape[2] + gap
    return canvas


def comparison_grid(inputs: torch.Tensor, reconstructions: torch.Tensor, gap: int = 4) -> Image.Image:
    """Inputs in the top row, their reconstructions below: `uint8` `(B, C, H, W)` each."""
    top, bottom = side_by_side(*inputs, gap=gap), side_by_side(*reconstructions, gap=gap)
    canvas = Image.new("RGB", (top.width, top.height + gap + bottom.height), (255, 255, 255))
    canvas.paste(top, (0, 0))
    canvas.paste(bottom, (0, top.height + gap))
    return canvas
