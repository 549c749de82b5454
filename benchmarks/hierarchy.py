"""Does the hierarchy help? VQ-VAE-2 against single-grid VQ-VAEs at equal token bits and equal steps.

Three arms on the same batches (hf-vq's training stream for the seed), the same optimiser and the same quantizer
recipe (hf-vq's recommendation for new models: k-means init + dead-code restarts), each trained on its own loss
(MSE + codebook + commitment), as `hf-vq train --model-type vqvae / vqvae2` trains them:

- `vqvae2`: a top grid (f8) and a bottom grid (f4), K codes each: bits = (h_t w_t + h_b w_b) log2 K;
- `vqvae_equal_bits`: one f4 grid with K^(5/4) codes, so that its bits equal VQ-VAE-2's (the top grid holds a
  quarter as many tokens as the bottom one);
- `vqvae_bottom`: one f4 grid with K codes: VQ-VAE-2's bottom level alone, so the comparison shows what the top adds.

All three share the encoder/decoder widths; VQ-VAE-2 has more parameters (a second encoder and the top decoder),
reported beside the results. Evaluation is `hf-vq evaluate`'s measurement (`hf_vq.evaluation.measure_reconstructions`:
8-bit images, per-image PSNR, AlexNet LPIPS, code usage per level) on the held-out set: the built-in eval photos
(15 fixed views, never trained on) or Fashion-MNIST's test split.

    OMP_NUM_THREADS=1 python benchmarks/hierarchy.py --seeds 0 1 2 --output benchmarks/results/hierarchy.md
    OMP_NUM_THREADS=1 python benchmarks/hierarchy.py --dataset-name fashion_mnist --resolution 32 --seeds 0 1 2

Several seeds give a 95% t-interval per arm and a paired t-test of VQ-VAE-2 against each single-grid arm. The top
level's usage is reported along the run, to show whether it stays alive.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hf_vq.data import build_train_dataloader, build_train_stream, load_eval_images, to_uint8
from hf_vq.evaluation import measure_reconstructions
from hf_vq.losses import load_lpips
from hf_vq.modeling import VQVAE2Config, VQVAE2Model, VQVAEConfig, VQVAEModel
from hf_vq.modeling.configuration_utils import RECOMMENDED_QUANTIZER_FIELDS

ARMS = ("vqvae2", "vqvae_equal_bits", "vqvae_bottom")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--codebook-size", type=int, default=256, help="K of each VQ-VAE-2 level (a power of 2).")
    parser.add_argument("--hidden-channels", type=int, default=64)
    parser.add_argument("--code-dim", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=4e-4)
    parser.add_argument("--dataset-name", default=None, help="None: the built-in photos; or e.g. fashion_mnist.")
    parser.add_argument("--num-eval-images", type=int, default=500, help="Held-out images (the built-in set has 15).")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="Runs in parallel, one thread each.")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file to write the results to.")
    return parser.parse_args(argv)


def build_model(arm: str, args) -> torch.nn.Module:
    widths = dict(
        hidden_channels=args.hidden_channels,
        residual_hidden_channels=args.hidden_channels // 2,
        num_residual_layers=2,
        latent_channels=args.hidden_channels,
        vq_embed_dim=args.code_dim,
        sample_size=args.resolution,
        **RECOMMENDED_QUANTIZER_FIELDS,
    )
    k = args.codebook_size
    if arm == "vqvae2":
        return VQVAE2Model(
            VQVAE2Config(num_vq_embeddings=k, top_num_vq_embeddings=k, top_vq_embed_dim=args.code_dim, **widths)
        )
    # (5/4) log2 K bits per f4 token carry VQ-VAE-2's top + bottom bits (the top has 1/4 as many tokens).
    size = round(2 ** (1.25 * math.log2(k))) if arm == "vqvae_equal_bits" else k
    return VQVAEModel(VQVAEConfig(num_vq_embeddings=size, num_downsample_layers=2, **widths))


def token_bits(model, resolution: int) -> float:
    layout = model.token_layout
    return sum(
        math.prod(level.token_shape(resolution, resolution)) * math.log2(level.codebook_size)
        for level in layout.levels
    )


def held_out(args) -> torch.Tensor:
    """`uint8` `(N, 3, R, R)` held-out images, prepared as hf-vq's training evaluation prepares them."""
    split = None if args.dataset_name is None else "test"
    images, _ = load_eval_images(
        args.dataset_name, num_images=args.num_eval_images, resolution=args.resolution, split=split
    )
    return to_uint8(images)


def evaluate(model, images: torch.Tensor, lpips) -> dict[str, float]:
    measured = measure_reconstructions(model, images.split(32), perceptual={"lpips": lpips})
    return dict(measured.metrics)


def run_one(job: tuple[str, int, argparse.Namespace]) -> dict:
    """Trains one arm for one seed; returns its evaluations along the run."""
    arm, seed, args = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = build_model(arm, args).train()
    stream = build_train_stream(args.dataset_name, resolution=args.resolution, seed=seed, shuffle_buffer_size=256)
    batches = iter(build_train_dataloader(stream, args.batch_size, num_workers=0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, fused=True)
    images, lpips = held_out(args), load_lpips("alexnet")
    history, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = next(batches)["pixel_values"]
        loss = model(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            history.append({"step": step, **evaluate(model, images, lpips)})
    return {
        "arm": arm,
        "seed": seed,
        "history": history,
        "final": history[-1],
        "bits": token_bits(model, args.resolution),
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - start,
    }


# --- statistics and the report ------------------------------------------------------------------------------


def interval(values: list[float]) -> str:
    """mean ± 95% t half-width (the bare value for one seed)."""
    from scipy import stats

    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return f"{array.mean():.4g}"
    half = stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array))
    return f"{array.mean():.4g} ± {half:.2g}"


def paired(a: list[float], b: list[float]) -> str:
    from scipy import stats

    diff = np.asarray(a) - np.asarray(b)
    if len(diff) < 2:
        return f"{diff.mean():+.4g}"
    p = stats.ttest_rel(a, b).pvalue
    return f"{diff.mean():+.4g} (p = {p:.3g})"


def markdown(args, argv: list[str], results: list[dict]) -> str:
    by_arm = {arm: sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"]) for arm in ARMS}
    dataset = args.dataset_name or "built-in photos (held-out eval views)"
    lines = [
        "# VQ-VAE-2 against single-grid VQ-VAEs at equal token bits",
        "",
        f"`OMP_NUM_THREADS=1 python benchmarks/hierarchy.py {' '.join(argv)}`",
        "",
        f"{datetime.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread(s) per run, torch {torch.__version__}, CPU. Data: {dataset} at "
        f"{args.resolution} px; {args.steps} steps of batch {args.batch_size}; seeds {args.seeds}.",
        "",
        "| arm | token bits / image | parameters | PSNR (dB) ↑ | LPIPS ↓ | usage top | usage bottom / grid |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, runs in by_arm.items():
        finals = [r["final"] for r in runs]
        top = interval([f["codebook_usage/top"] for f in finals]) if arm == "vqvae2" else "—"
        bottom = [f.get("codebook_usage/bottom", f["codebook_usage"]) for f in finals]
        lines.append(
            f"| `{arm}` | {runs[0]['bits']:.0f} | {runs[0]['parameters'] / 1e6:.2f}M | "
            f"{interval([f['psnr'] for f in finals])} | {interval([f['lpips'] for f in finals])} | {top} | "
            f"{interval(bottom)} |"
        )
    lines += ["", "Paired differences, VQ-VAE-2 minus the arm (mean over seeds, paired t-test):", ""]
    lines += ["| against | PSNR (dB) | LPIPS |", "|---|---|---|"]
    ours = [r["final"] for r in by_arm["vqvae2"]]
    for arm in ARMS[1:]:
        other = [r["final"] for r in by_arm[arm]]
        lines.append(
            f"| `{arm}` | {paired([o['psnr'] for o in ours], [o['psnr'] for o in other])} | "
            f"{paired([o['lpips'] for o in ours], [o['lpips'] for o in other])} |"
        )
    lines += ["", "VQ-VAE-2's top-level code usage along the run (mean over seeds):", ""]
    steps = [h["step"] for h in by_arm["vqvae2"][0]["history"]]
    lines += ["| step | " + " | ".join(map(str, steps)) + " |", "|---|" + "---|" * len(steps)]
    for key in ("codebook_usage/top", "codebook_usage/bottom"):
        means = [np.mean([r["history"][i][key] for r in by_arm["vqvae2"]]) for i in range(len(steps))]
        lines.append(f"| {key.split('/')[1]} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    seconds = np.mean([r["seconds"] for r in results])
    lines += ["", f"Mean wall time of one run: {seconds / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    jobs = [(arm, seed, args) for seed in args.seeds for arm in ARMS]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, jobs))
    report = markdown(args, argv, results)
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
