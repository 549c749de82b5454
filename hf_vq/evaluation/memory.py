"""Will a forward pass fit? A rough estimate of a tokenizer's peak memory on one image, and the guard that refuses
an image too large for the memory the device has free, before the work starts (`hf-vq reconstruct`; a demo can use
the same guard)."""

from __future__ import annotations

import os

import torch

# Bytes per pixel of a forward pass without gradients: a few live float32 activations of the widest full-resolution
# stage (`widest_channels`), each 4 bytes; a measured 64-px VQ-GAN peaks near 3 of them.
LIVE_ACTIVATIONS = 4


def widest_channels(model: torch.nn.Module) -> int:
    """The most channels any convolution of `model` writes: read from the model itself, whatever its config calls
    its widths (`block_out_channels`, `hidden_channels`, ...)."""
    convs = [m.out_channels for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    return max(convs, default=1)


def estimate_forward_bytes(model, height: int, width: int, tiled: bool) -> int:
    """Peak memory of `model(pixels)` on one image, in bytes.

    Estimated from pixels x a per-pixel activation cost, plus the attention over the latent grid (quadratic in its
    size); with tiling, the activations and attention are those of one `sample_size` tile, and only the image, its
    latents and the reconstruction are full-size.

    Args:
        model (`VQPreTrainedModel`):
            The tokenizer.
        height, width (`int`):
            The image's size in pixels.
        tiled (`bool`):
            Whether it runs tile by tile (`tiled_encode` / `tiled_decode`).
    """
    side, factor = model.config.sample_size, model.downsampling_factor  # the finest grid: where attention runs
    active = side * side if tiled else height * width
    activations = active * LIVE_ACTIVATIONS * widest_channels(model) * 4
    attention = (active // factor**2) ** 2 * 4
    images = height * width * 4 * (3 + 3 + 1)  # float input and reconstruction, uint8 copies
    return activations + attention + images


def available_bytes(device: torch.device) -> int:
    """The memory free on `device` (on the CPU: the system's available pages; unbounded where not reported)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not reported (e.g. macOS): no limit is enforced
        return 1 << 62


def check_forward_fits(model, height: int, width: int, *, tiled: bool, name: str, fix: str) -> None:
    """Raises a `ValueError` when `model(pixels)` on a `height` x `width` image would need more memory than its
    device has free ([`estimate_forward_bytes`] against [`available_bytes`]).

    Args:
        model (`VQPreTrainedModel`):
            The tokenizer, on its device.
        height, width (`int`):
            The image's size in pixels.
        tiled (`bool`):
            Whether it runs tile by tile.
        name (`str`):
            What the image is to the user (its path): the message starts with it.
        fix (`str`):
            What to do instead, in the caller's words (`"give a smaller --resolution"`).
    """
    needed = estimate_forward_bytes(model, height, width, tiled)
    free = available_bytes(model.device)
    if needed > free:
        raise ValueError(
            f"{name}: reconstructing it at {width}x{height} needs about {needed / 2**30:.1f} GiB and "
            f"{model.device} has {free / 2**30:.1f} GiB free. Expected a size that fits; {fix}."
        )


__all__ = ["LIVE_ACTIVATIONS", "available_bytes", "check_forward_fits", "estimate_forward_bytes", "widest_channels"]
