"""Evaluation of hf-vq tokenizers: reconstruction metrics, rFID/KID with a pinned Inception, code usage.

`evaluate(model, dataset=...)` runs the protocol documented in `hf_vq.evaluation.reconstruction`, through
`measure_reconstructions`, the one measurement that `hf-vq evaluate`, the training monitor and the benchmarks share;
the metric functions and the Inception feature extractor are importable on their own. [`prepare_assets`] readies
every offline file (LPIPS, the FID network, the built-in photos) in one call (`hf-vq assets`).
"""

from .assets import AssetStatus, prepare_assets
from .fid import InceptionFeatureExtractor, resolve_inception_path
from .generation import ClassProbe, TokenBaselines, evaluate_prior, held_out_score, prior_nll, train_class_probe
from .metrics import codebook_statistics, frechet_distance, kernel_inception_distance, psnr, ssim
from .reconstruction import (
    DEFAULT_NUM_IMAGES,
    GRID_FILENAME,
    GRID_IMAGES,
    ReconstructionMeasurements,
    evaluate,
    iter_eval_images,
    measure_reconstructions,
    reconstruct,
    resolve_eval_split,
)

__all__ = [
    "DEFAULT_NUM_IMAGES",
    "GRID_FILENAME",
    "GRID_IMAGES",
    "AssetStatus",
    "ClassProbe",
    "InceptionFeatureExtractor",
    "ReconstructionMeasurements",
    "TokenBaselines",
    "codebook_statistics",
    "evaluate",
    "evaluate_prior",
    "frechet_distance",
    "held_out_score",
    "iter_eval_images",
    "kernel_inception_distance",
    "measure_reconstructions",
    "prepare_assets",
    "prior_nll",
    "psnr",
    "reconstruct",
    "resolve_eval_split",
    "resolve_inception_path",
    "ssim",
    "train_class_probe",
]
