"""Watching a run: the inputs-vs-reconstructions grid, held-out evaluation, the model card's training recipe.

The grid is `make_grid`'s layout: rows of held-out inputs, each followed by the row of their reconstructions,
saved as PNG (`samples/step-XXXXXXX.png` during training, `samples.png` beside the final model) and logged to
TensorBoard / W&B. Evaluation uses `hf_vq.evaluation.metrics` (PSNR and SSIM on 8-bit images, code usage over the
whole held-out set), so the numbers match `hf-vq evaluate`'s conventions.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SAMPLES_NAME = "samples.png"
BUILTIN_DATASET = "built-in photos (scikit-image, scikit-learn, matplotlib)"


def to_uint8_images(pixel_values: torch.Tensor, pixel_range) -> np.ndarray:
    """(B, 3, H, W) in pixel_range -> (B, H, W, 3) uint8."""
    low, high = pixel_range
    unit = ((pixel_values.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
    return (unit * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(inputs: np.ndarray, reconstructions: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """Rows of inputs, each followed by the row of their reconstructions. (H', W', 3) uint8, white padding."""
    n, h, w, _ = inputs.shape
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    grid = np.full((rows * 2 * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        x = pad + c * (w + pad)
        for k, images in enumerate((inputs, reconstructions)):
            y = pad + (2 * r + k) * (h + pad)
            grid[y : y + h, x : x + w] = images[i]
    return grid


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch_size: int = 16):
    """Reconstructions and token ids of `images` in eval mode (fp32), restoring the train/eval mode after."""
    was_training = model.training
    model.eval()
    recons, indices = [], []
    for chunk in images.split(batch_size):
        out = model(chunk)
        recons.append(out.reconstruction.float())
        indices.append(out.indices)
    model.train(was_training)
    return torch.cat(recons), torch.cat(indices)


def evaluate(model, images: torch.Tensor) -> dict[str, float]:
    """PSNR / SSIM (hf_vq.evaluation's conventions: on 8-bit images) and code usage on the held-out images."""
    from ..evaluation.metrics import codebook_statistics, psnr, ssim, to_uint8

    recon, indices = reconstruct(model, images)
    pixel_range = model.config.pixel_range
    real8, fake8 = to_uint8(images.cpu(), pixel_range), to_uint8(recon.cpu(), pixel_range)
    values = psnr(fake8, real8)
    counts = torch.bincount(indices.flatten().cpu(), minlength=model.config.num_vq_embeddings)
    stats = codebook_statistics(counts)
    return {
        "psnr": float(values[torch.isfinite(values)].mean()) if torch.isfinite(values).any() else float("inf"),
        "ssim": float(ssim(fake8, real8).mean()),
        "codebook_usage": stats["codebook_usage"],
        "perplexity": stats["perplexity"],
    }


def save_grid(model, images: torch.Tensor, path: Path) -> np.ndarray:
    recon, _ = reconstruct(model, images)
    pixel_range = model.config.pixel_range
    grid = make_grid(to_uint8_images(images, pixel_range), to_uint8_images(recon, pixel_range))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return grid


def log_grid(accelerator, grid: np.ndarray, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({"samples": grid[None]}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({"samples": [grid]}, step=step)




def card_info(args, accelerator, model, objective, stream, state, results: dict | None, has_grid: bool, held_out: bool = True) -> dict:
    """`model.card_info` for `save_pretrained`: the recipe, the data, the grid and the final evaluation."""
    if objective is None:
        losses = f"{model.config.reconstruction_loss_type.upper()} + codebook + commitment (β={model.config.commitment_cost})"
    else:
        c = objective.config
        losses = f"{c.reconstruction_loss_type.upper()}"
        if c.perceptual_weight > 0:
            losses += f" + {c.perceptual_weight:g}·LPIPS({args.perceptual_net})"
        losses += f" + codebook + commitment + {c.gan_loss_type} GAN (adaptive weight × {c.disc_weight:g}, on from step {c.disc_start}, ramp {c.disc_ramp_steps})"
    device = "CPU" if accelerator.device.type == "cpu" else torch.cuda.get_device_name(accelerator.device)
    training = {
        "dataset": stream.description,
        "steps": state.global_step,
        "batch_size": args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes,
        "learning_rate": args.learning_rate,
        "lr_schedule": f"{args.lr_scheduler}, {args.lr_warmup_steps} warm-up steps",
        "image_size": args.resolution,
        "losses": losses,
        "precision": args.mixed_precision if args.mixed_precision != "no" else "fp32",
        "ema": f"decay {args.ema_decay} (saved weights)" if args.use_ema else "off",
        "hardware": f"{accelerator.num_processes}x {device}",
    }
    if args.init_from:
        frozen = [name for name, on in (("encoder", args.freeze_encoder), ("codebook", args.freeze_codebook)) if on]
        training["fine_tuned_from"] = args.init_from + (f" ({' and '.join(frozen)} frozen)" if frozen else "")
    info = {"training": training, "datasets": [args.dataset_name or BUILTIN_DATASET]}
    if args.init_from and not Path(args.init_from).exists():
        info["base_model"] = args.init_from
    if has_grid:
        info["grid"] = SAMPLES_NAME
        shown = "Held-out images" if held_out else "Training images (the dataset has no held-out split)"
        info["grid_caption"] = f"{shown} (odd rows) and their reconstructions (even rows) after {state.global_step} steps."
    if results is not None:
        info["results"] = results
    return info


def print_summary(args, output_dir: Path, state, seconds: float, has_grid: bool, model_class: str) -> None:
    """Where the outputs went and how to look at them (stdout: this is what the user ran the command for)."""
    lines = [
        f"Done: {state.global_step} steps in {seconds / 60:.1f} min ({state.images_seen} images"
        + (f", {state.skipped_records} unreadable records skipped" if state.skipped_records else "")
        + (f", {state.nonfinite_steps} non-finite steps skipped" if state.nonfinite_steps else "")
        + ").",
        f"Model (with model card README.md): {output_dir}",
    ]
    if has_grid:
        lines.append(f"Inputs vs reconstructions:      {output_dir / SAMPLES_NAME} (and per-step grids in {output_dir / 'samples'})")
    if args.report_to in ("tensorboard", "all"):
        lines.append(f"Loss curves:                    tensorboard --logdir {output_dir / 'logs'}")
    lines.append(f"Load it in Python:              {model_class}.from_pretrained({str(output_dir)!r})")
    print("\n".join(lines))


def eval_results(args, metrics: dict[str, float], num_images: int) -> dict:
    """The end-of-training evaluation in the `results` layout of `hf_vq.hub.write_model_card`."""
    return {
        "metrics": metrics,
        "dataset": args.dataset_name or BUILTIN_DATASET,
        "split": "eval photos: chelsea, flower, rocket" if args.dataset_name is None else (args.eval_split or "validation/test"),
        "num_images": num_images,
        "image_size": args.resolution,
        "protocol": {"description": "held-out images, center crops, evaluated by hf-vq train after its last step"},
        "command": "hf-vq train " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:]),
    }
