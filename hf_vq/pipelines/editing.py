"""Images and masks for editing with a [`VQImagePipeline`]: the image to repaint placed on the prior's canvas and the
pixel mask of what to regenerate (white in `mask_image`, and everything outside a smaller image: outpainting).

The prior turns the pixel mask into the token positions to regenerate (`tokens_under_mask`: every token whose
cell touches a masked pixel) and regenerates only those (`inpaint_indices`); the ids outside stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ImageInput = Image.Image | np.ndarray | torch.Tensor | Sequence[Image.Image]


def _as_batch(value, name: str, channels: int) -> torch.Tensor:
    """A PIL image, a list of them, an array `(H, W[, C])` / `(B, H, W, C)` or a tensor `(C, H, W)` / `(B, C, H, W)`
    with values in [0, 1] (PIL: [0, 255]) -> float `(B, channels, H, W)` in [0, 1]."""
    if isinstance(value, Image.Image):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Image.Image) for v in value):
        mode = "RGB" if channels == 3 else "L"
        arrays = [np.asarray(v.convert(mode), dtype=np.float32) / 255.0 for v in value]
        if len({a.shape for a in arrays}) > 1:
            raise ValueError(f"The images of `{name}` must all have one size; got {[v.size for v in value]}.")
        tensor = torch.from_numpy(np.stack(arrays))
        return tensor[:, None] if channels == 1 else tensor.permute(0, 3, 1, 2)
    if isinstance(value, np.ndarray):
        array = torch.from_numpy(np.asarray(value, dtype=np.float32))
        array = array[..., None] if array.dim() == 2 or (array.dim() == 3 and channels == 1) else array
        value = (array[None] if array.dim() == 3 else array).permute(0, 3, 1, 2)
    if not isinstance(value, torch.Tensor) or value.dim() not in (2, 3, 4):
        raise ValueError(
            f"`{name}` must be a PIL image, a list of them, a numpy array or a torch tensor with values in [0, 1]; "
            f"got {type(value).__name__}."
        )
    tensor = value.detach().float().cpu()
    tensor = tensor[None, None] if tensor.dim() == 2 else tensor[None] if tensor.dim() == 3 else tensor
    if tensor.shape[1] != channels:
        if tensor.shape[1] == 1:
            tensor = tensor.expand(-1, channels, -1, -1)
        elif channels == 1:
            tensor = tensor.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"`{name}` must have 1 or {channels} channels; got shape {tuple(value.shape)}.")
    return tensor


def edit_inputs(
    image: ImageInput, mask_image: ImageInput | None, canvas: Sequence[int]
) -> tuple[torch.Tensor, torch.BoolTensor]:
    """The image on the canvas and the pixel mask to regenerate.

    Args:
        image (`PIL.Image`, list, `np.ndarray` or `torch.Tensor`):
            RGB image(s), values in [0, 1] for arrays and tensors. As large as the canvas, or smaller (outpainting:
            it is centred and the rest of the canvas is regenerated).
        mask_image (same types, *optional*):
            White (>= 0.5) where to regenerate, at the image's size (resized with nearest neighbours otherwise); one
            mask for all images, or one per image. Optional only when the image is smaller than the canvas.
        canvas (`Sequence[int]`): `(height, width)` of the prior's images.

    Returns:
        `(pixels, mask)`: `(B, 3, H, W)` floats in [0, 1] (grey outside a smaller image) and `(B, H, W)` booleans.
    """
    height, width = canvas
    pixels = _as_batch(image, "image", 3)
    batch, _, h, w = pixels.shape
    if h > height or w > width:
        raise ValueError(
            f"`image` is {h}x{w} (height x width), larger than the prior's {height}x{width} canvas. Resize or crop it "
            f"to {height}x{width}, or smaller to outpaint around it."
        )
    if mask_image is None:
        if (h, w) == (height, width):
            raise ValueError(
                "Editing needs `mask_image` (white: regenerate, black: keep) when `image` fills the canvas; a smaller "
                f"image than {height}x{width} is outpainted without one."
            )
        mask = torch.zeros(batch, 1, h, w)
    else:
        mask = _as_batch(mask_image, "mask_image", 1)
        if mask.shape[-2:] != (h, w):
            mask = F.interpolate(mask, size=(h, w), mode="nearest")
        if len(mask) not in (1, batch):
            raise ValueError(f"`mask_image` must hold one mask, or one per image ({batch}); got {len(mask)}.")
        mask = mask.expand(batch, -1, -1, -1)
    top, left = (height - h) // 2, (width - w) // 2
    canvas_pixels = torch.full((batch, 3, height, width), 0.5)
    canvas_pixels[:, :, top : top + h, left : left + w] = pixels.clamp(0, 1)
    canvas_mask = torch.ones(batch, height, width, dtype=torch.bool)
    canvas_mask[:, top : top + h, left : left + w] = mask[:, 0] >= 0.5
    return canvas_pixels, canvas_mask


__all__ = ["ImageInput", "edit_inputs"]
