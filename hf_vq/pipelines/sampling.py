"""Sampling helpers over a [`VQImagePipeline`] shared by `hf-vq generate`, the prior's training grids and the
generation evaluation: images as `uint8` tensors, one row of samples per class label."""

from __future__ import annotations

import torch

from ..data.images import to_uint8


def sample_images(pipe, class_labels, num_images: int, guidance_scale: float, generator, **sampling) -> torch.Tensor:
    """`uint8` `(B, 3, H, W)` images from a `VQImagePipeline`: `num_images` per class label (rows in label order), or
    `num_images` unconditional ones when `class_labels` is None; guidance only where there are labels. `sampling`
    holds the prior family's own options (temperature, top-k, ...), passed through to the pipeline."""
    guidance = guidance_scale if class_labels is not None else 1.0
    images = pipe(
        class_labels=class_labels,
        num_images_per_prompt=num_images,
        guidance_scale=guidance,
        generator=generator,
        output_type="pt",
        **sampling,
    ).images
    return to_uint8(images.float(), (0.0, 1.0))


__all__ = ["sample_images"]
