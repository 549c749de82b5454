"""Reconstruction metrics with one stated convention each.

Every function takes 8-bit images (`uint8`, `(B, C, H, W)`), the values a saved PNG holds, so that the numbers
do not depend on the model's pixel range or on float noise below one grey level. PSNR and SSIM are
torchmetrics' functional implementations; FID and KID are torchmetrics' metrics fed with our own Inception
features (see `fid.py`), so only the feature extractor is ours.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """`uint8` images in `[0, 255]` -> float64 in `[0, 1]`."""
    if images.dtype != torch.uint8:
        raise ValueError(f"Expected uint8 images in [0, 255]; got dtype {images.dtype}. Quantise with `to_uint8`.")
    return images.double() / 255.0


def to_uint8(pixel_values: torch.Tensor, pixel_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """Model-range floats `(B, C, H, W)` -> `uint8` in `[0, 255]`: clamp, scale, round to the nearest level."""
    low, high = float(pixel_range[0]), float(pixel_range[1])
    unit = ((pixel_values.detach().float() - low) / (high - low)).clamp(0.0, 1.0)
    return (unit * 255.0).round().to(torch.uint8)


def from_uint8(images: torch.Tensor, pixel_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """`uint8` `(B, C, H, W)` -> float32 in the model's `pixel_range` (the inverse of [`to_uint8`])."""
    low, high = float(pixel_range[0]), float(pixel_range[1])
    return images.float() / 255.0 * (high - low) + low


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, `(B,)`: `10 log10(1 / MSE)` over all pixels and channels in `[0, 1]`.

    Identical images give `inf`; the dataset score is the mean of per-image values (finite images only).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(
        to_unit_range(reconstruction), to_unit_range(target), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )


def ssim(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, `(B,)`: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, on RGB in `[0, 1]`,
    averaged over channels and positions (Wang et al. 2004's constants; torchmetrics' implementation)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        to_unit_range(reconstruction), to_unit_range(target), data_range=1.0, reduction="none"
    )


def codebook_statistics(counts: torch.Tensor) -> dict[str, float]:
    """Usage and perplexity of a codebook from its token histogram over a whole dataset.

    Args:
        counts (`torch.Tensor` of shape `(K,)`, or `(L, K)` for L residual levels): how often each code was used.

    Returns:
        `codebook_usage`: fraction of the K codes used at least once. `perplexity`: `exp(H)` of the empirical
        code distribution, between 1 (one code) and K (all codes equally often). With several levels, both are
        averaged over the levels. `tokens`: tokens counted (all levels).
    """
    counts = counts.double()
    counts = counts[None] if counts.dim() == 1 else counts
    totals = counts.sum(dim=1, keepdim=True)
    if (totals <= 0).any():
        raise ValueError("No tokens were counted: the histogram is empty.")
    probs = counts / totals
    entropy = -torch.where(probs > 0, probs * probs.clamp_min(1e-300).log(), torch.zeros_like(probs)).sum(dim=1)
    return {
        "codebook_usage": float((counts > 0).double().mean(dim=1).mean()),
        "perplexity": float(entropy.exp().mean()),
        "tokens": int(counts.sum()),
    }


class _Precomputed(nn.Module):
    """Hands precomputed features to torchmetrics, which then only accumulates statistics and compares them."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """FID between feature sets `(N, D)`: `‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^½)`, in float64.

    Needs at least 2 rows per set; with fewer rows than `D` the covariances are singular and FID is biased
    upwards, which is why the evaluation reports its N next to it (and KID, which is unbiased).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real_features.shape[1]))
    metric.update(real_features.double(), real=True)
    metric.update(fake_features.double(), real=False)
    return float(metric.compute())


def kernel_inception_distance(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    *,
    subset_size: int | None = None,
    subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018, https://arxiv.org/abs/1801.01401): the unbiased polynomial-kernel MMD² between
    feature sets, averaged over `subsets` random subsets. Returns `(mean, std)`.

    `subset_size` defaults to `min(1000, N // 2)` (torch-fidelity's 1000 once N ≥ 2000), so that the subsets
    differ and the std means something at small N. Subsets are drawn with a fixed `seed`.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(real_features), len(fake_features))
    if subset_size is None:
        subset_size = max(2, min(1000, n // 2))
    if n < subset_size:
        raise ValueError(f"KID needs at least `subset_size` = {subset_size} images per set; got {n}.")
    with warnings.catch_warnings():
        # torchmetrics warns that KID keeps every feature in memory: that is the point here, they are given.
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=_Precomputed(real_features.shape[1]), subsets=subsets, subset_size=subset_size
        )
    metric.update(real_features.double(), real=True)
    metric.update(fake_features.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def mean_finite(values: torch.Tensor) -> float:
    """Mean over finite entries (PSNR of a pixel-exact reconstruction is `inf`); `inf` if none is finite."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else math.inf
