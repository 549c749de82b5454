"""Watching a run: the inputs-vs-reconstructions grid, held-out evaluation, the end-of-run summary and results.

The grid is `hf_vq.data.comparison_grid`'s layout: rows of held-out inputs, each followed by the row of their
reconstructions, saved as PNG (`samples/step-XXXXXXX.png` during training, `samples.png` beside the final model)
and logged to TensorBoard / W&B. Evaluation is `hf_vq.evaluation.measure_reconstructions`, the measurement of
`hf-vq evaluate` (PSNR and SSIM on 8-bit images, code usage counted by the model's `token_layout` over the whole
held-out set), so the numbers are the same as that command's on the same images.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch

from ..data import BUILTIN_DESCRIPTION, comparison_grid, to_uint8
from ..evaluation import measure_reconstructions, reconstruct

SAMPLES_NAME = "samples.png"
GRID_COLUMNS = 8
GRID_GAP = 2
EVAL_BATCH_SIZE = 16

logger = logging.getLogger(__name__)


def evaluate(model, images: torch.Tensor) -> dict[str, float]:
    """PSNR, SSIM, code usage and perplexity of `model` on held-out `images` `(N, C, H, W)` in its pixel range.

    `hf-vq evaluate`'s measurement, on the images quantised to 8 bits (exact for images read from 8-bit files);
    with several token levels, per-level code usage too (`codebook_usage/<level>`).
    """
    images8 = to_uint8(images, model.config.pixel_range)
    measured = measure_reconstructions(model, images8.split(EVAL_BATCH_SIZE))
    return {name: value for name, value in measured.metrics.items() if name != "tokens"}


def save_grid(model, images: torch.Tensor, path: Path) -> np.ndarray:
    """Saves `images` (in the model's pixel range) over their reconstructions as a PNG; returns it `(H, W, 3)`."""
    inputs = to_uint8(images, model.config.pixel_range)
    grid = comparison_grid(
        inputs.cpu(), reconstruct(model, inputs, EVAL_BATCH_SIZE).cpu(), columns=GRID_COLUMNS, gap=GRID_GAP
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return np.asarray(grid)


def log_grid(accelerator, grid: np.ndarray, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({"samples": grid[None]}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({"samples": [grid]}, step=step)


def counted(number: int, noun: str) -> str:
    """`number` and `noun`, in the plural unless it is one: "1 batch", "2 batches", "0 steps"."""
    if number == 1:
        return f"{number} {noun}"
    return f"{number} {noun}{'es' if noun.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


def log_summary(args, output_dir: Path, state, seconds: float, has_grid: bool, model_class: str) -> None:
    """Where the outputs went and how to look at them, logged as one message (INFO on the main process, as the loop
    set it up), like the prior's summary (`hf_vq.training.prior.PriorTask.report`)."""
    lines = [
        f"Done: {counted(state.global_step, 'step')} in {seconds / 60:.1f} min ({counted(state.images_seen, 'image')}"
        + (f", {counted(state.skipped_records, 'unreadable record')} skipped" if state.skipped_records else "")
        + (
            f", {counted(state.empty_batches, 'batch')} without a readable image skipped"
            if state.empty_batches
            else ""
        )
        + (f", {counted(state.nonfinite_steps, 'non-finite step')} skipped" if state.nonfinite_steps else "")
        + ").",
        f"Model (with model card README.md): {output_dir}",
    ]
    if has_grid:
        per_step = f" (and per-step grids in {output_dir / 'samples'})" if (output_dir / "samples").is_dir() else ""
        lines.append(f"Inputs vs reconstructions:      {output_dir / SAMPLES_NAME}{per_step}")
    if args.report_to in ("tensorboard", "all"):
        lines.append(f"Loss curves:                    tensorboard --logdir {output_dir / 'logs'}")
    lines.append(f"Load it in Python:              {model_class}.from_pretrained({str(output_dir)!r})")
    logger.info("\n".join(lines))


def eval_results(args, metrics: dict[str, float], num_images: int) -> dict:
    """The end-of-training evaluation in the `results` layout of `hf_vq.hub.write_model_card`."""
    return {
        "metrics": metrics,
        "dataset": args.dataset_name or BUILTIN_DESCRIPTION,
        "split": (
            "eval photos: chelsea, flower, rocket"
            if args.dataset_name is None
            else (args.eval_split or "validation/test")
        ),
        "num_images": num_images,
        "image_size": args.resolution,
        "protocol": {"description": "held-out images, center crops, evaluated by hf-vq train after its last step"},
        "command": "hf-vq train " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:]),
    }
