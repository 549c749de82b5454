"""A small CNN classifier of 8-bit images: the instrument behind the class-conditional accuracy of generated images.

Trained on a dataset's real training images ([`train_class_probe`]), it classifies generated ones; the fraction
classified as the class they were generated for is their class accuracy (`hf_vq.evaluation.generation`). Its own
accuracy on real held-out images is the ceiling of that measure and is reported beside it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _labels(values) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values).long().cpu()
    if labels.dim() != 1:
        raise ValueError(f"`labels` must be a 1-D integer array; got shape {tuple(labels.shape)}.")
    return labels


class ClassProbe(nn.Module):
    """A small CNN classifier of 8-bit images, the instrument behind class-conditional accuracy.

    Three 3x3 conv + ReLU + 2x2 max-pool stages (`width`, 2 `width`, 4 `width` channels), pooled to 4x4, then a
    linear layer: ~90% on Fashion-MNIST after two epochs on a CPU. Any input size works; a grayscale probe reads
    RGB images as their channel mean and an RGB probe repeats gray ones.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.in_channels, self.num_classes, self.width = in_channels, num_classes, width
        layers, channels = [], in_channels
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(channels * 16, num_classes)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """`uint8` `(B, C, H, W)` -> float `(B, in_channels, H, W)` in `[-1, 1]` on the probe's device."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"The probe takes uint8 images (B, C, H, W); got {images.dtype} {tuple(images.shape)}.")
        x = images.to(self.head.weight.device).float() / 127.5 - 1.0
        if x.shape[1] != self.in_channels:
            x = x.mean(dim=1, keepdim=True).expand(-1, self.in_channels, -1, -1)  # gray <-> RGB
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted classes `(B,)` of `uint8` images `(B, C, H, W)`."""
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self(self.prepare(b)).argmax(dim=1).cpu() for b in images.split(batch_size)])
        finally:
            self.train(was_training)

    def accuracy(self, images: torch.Tensor, labels) -> float:
        """Fraction of `images` classified as their `labels`."""
        labels = _labels(labels)
        return float((self.predict(images) == labels).double().mean())


def train_class_probe(
    images: torch.Tensor,
    labels,
    *,
    num_classes: int | None = None,
    epochs: float = 2.0,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    width: int = 16,
    seed: int = 0,
) -> ClassProbe:
    """Trains a [`ClassProbe`] on real `uint8` images `(N, C, H, W)` and labels `(N,)`, on the CPU, with AdamW and
    a cosine schedule. Deterministic: the same inputs and `seed` give the same probe (torch's global RNG is left
    as it was).

    Args:
        num_classes (`int`, *optional*): defaults to `max(labels) + 1`.
        epochs (`float`, *optional*, defaults to 2.0): passes over the images (fractions allowed).
    """
    labels = _labels(labels)
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(
            f"`images` must be uint8 (N, C, H, W) with one label each; got {images.dtype} {tuple(images.shape)} and "
            f"{len(labels)} labels."
        )
    num_classes = num_classes or int(labels.max()) + 1
    steps = max(1, round(epochs * len(images) / batch_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = ClassProbe(images.shape[1], num_classes, width)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(probe.parameters(), lr=learning_rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        order = torch.empty(0, dtype=torch.long)
        probe.train()
        for _ in range(steps):
            if len(order) < batch_size:
                order = torch.cat([order, torch.randperm(len(images), generator=generator)])
            batch, order = order[:batch_size], order[batch_size:]
            loss = F.cross_entropy(probe(probe.prepare(images[batch])), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return probe.eval()


__all__ = ["ClassProbe", "train_class_probe"]
