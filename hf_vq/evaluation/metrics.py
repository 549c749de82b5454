"""Reconstruction metrics with one stated convention each.

Every image metric takes 8-bit images (`uint8`, `(B, C, H, W)`, see `hf_vq.data.to_uint8`), the values a saved
PNG holds, so that the numbers do not depend on the model's pixel range or on float noise below one grey level.
PSNR and SSIM are torchmetrics' functional implementations; FID and KID are torchmetrics' metrics fed with our own
Inception features (see `fid.py`), so only the feature extractor is ours. Code usage and perplexity come from the
quantizers' own statistics function, over a whole dataset.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ..modeling.quantizer_base import code_statistics


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """`uint8` images in `[0, 255]` -> float64 in `[0, 1]`."""
    if images.dtype != torch.uint8:
        raise ValueError(
            f"Expected uint8 images in [0, 255]; got dtype {images.dtype}. Quantise with `hf_vq.data.to_uint8`."
        )
    return images.double() / 255.0


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


def codebook_statistics(
    counts: torch.Tensor | Sequence[torch.Tensor], level_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Usage and perplexity of a tokenizer's codebooks from token histograms over a whole dataset, one histogram per
    codebook (levels that share a codebook are counted together: `layout.codebook_counts(layout.count_codes(ids))`).

    The maths is [`hf_vq.modeling.quantizer_base.code_statistics`], the one the quantizers report per batch.

    Args:
        counts (`torch.Tensor` of shape `(K,)` or `(S, K)`, or a sequence of them):
            How often each code was used. A tensor is one codebook (a row per residual stage); a sequence has one
            entry per codebook, as `layout.codebook_counts(layout.count_codes(ids))` returns them (one per level
            when no levels share a codebook).
        level_names (`Sequence[str]`, *optional*):
            The codebooks' names (`model.token_layout.codebook_names`: the levels' names when no levels share a
            codebook), used for the per-codebook keys when there are several; defaults to `level_0`, `level_1`, ...

    Returns:
        `codebook_usage`: fraction of the K codes used at least once. `perplexity`: `exp(H)` of the empirical
        code distribution, between 1 (one code) and K (all codes equally often). Both are averaged over the stages
        of a level, then over the levels. `tokens`: tokens counted (all levels and stages). With several levels,
        also `codebook_usage/<name>` and `perplexity/<name>` per level.
    """
    levels = [counts] if isinstance(counts, torch.Tensor) else list(counts)
    if not levels:
        raise ValueError("`counts` must hold at least one histogram; got an empty sequence.")
    names = list(level_names) if level_names is not None else [f"level_{i}" for i in range(len(levels))]
    if len(names) != len(levels):
        raise ValueError(f"Expected one name per level ({len(levels)} levels); got {len(names)} names: {names}.")
    per_level, tokens = {}, 0
    for name, histogram in zip(names, levels):
        histogram = histogram.detach().double().cpu()
        histogram = histogram[None] if histogram.dim() == 1 else histogram  # (S, K): a row per stage
        if (histogram.sum(dim=-1) <= 0).any():
            raise ValueError("No tokens were counted: the histogram is empty.")
        perplexity, usage = code_statistics(histogram)
        per_level[name] = (float(usage.mean()), float(perplexity.mean()))
        tokens += int(histogram.sum())
    stats = {
        "codebook_usage": sum(usage for usage, _ in per_level.values()) / len(per_level),
        "perplexity": sum(perplexity for _, perplexity in per_level.values()) / len(per_level),
        "tokens": tokens,
    }
    if len(per_level) > 1:
        for name, (usage, perplexity) in per_level.items():
            stats[f"codebook_usage/{name}"] = usage
            stats[f"perplexity/{name}"] = perplexity
    return stats


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
