"""Evaluation of hf-vq tokenizers: reconstruction metrics, rFID/KID with a pinned Inception, code usage.

`evaluate(model, dataset=...)` runs the protocol documented in `hf_vq.evaluation.evaluate`; the metric functions
and the Inception feature extractor are importable on their own.
"""

from .evaluate import evaluate, iter_eval_images
from .fid import InceptionFeatureExtractor, resolve_inception_path
from .metrics import codebook_statistics, frechet_distance, kernel_inception_distance, psnr, ssim

__all__ = [
    "InceptionFeatureExtractor",
    "codebook_statistics",
    "evaluate",
    "frechet_distance",
    "iter_eval_images",
    "kernel_inception_distance",
    "psnr",
    "resolve_inception_path",
    "ssim",
]
