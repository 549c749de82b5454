"""Which quantizer options keep a K = 16384 codebook alive? Trains one small VQ-GAN per option on real photos.

Every candidate gets the same model, data, seed, optimizer and number of steps; only the quantizer fields of the
config differ. Reported per candidate: PSNR on held-out photos (crops of photos never trained on), the code usage
over the last `codebook_usage_window` training steps (the model's `running_usage`), the fraction of codes and the
perplexity over all held-out tokens, dead codes at the end, and seconds per step on this machine. The held-out
numbers are `hf-vq evaluate`'s measurement (`hf_vq.evaluation.measure_reconstructions`: 8-bit images, each
residual stage's codes counted against its own codebook).

Data: the RGB photos that ship with scikit-image (the same split as `hf_vq.data`'s built-in photos:
train on astronaut, coffee, hubble_deep_field, ihc, motorcycle (left), retina; evaluate on chelsea and rocket),
as random square crops at two zooms, resized to `--resolution`.

    OMP_NUM_THREADS=1 python benchmarks/quantizer_defaults.py --jobs 3 \
        --output benchmarks/results/quantizer_defaults.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata

from hf_vq import VQGANConfig, VQGANModel
from hf_vq.data import to_uint8
from hf_vq.evaluation import measure_reconstructions

TRAIN_PHOTOS = ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "stereo_motorcycle", "retina")
EVAL_PHOTOS = ("chelsea", "rocket")

CANDIDATES: dict[str, dict] = {
    "vq (plain)": {},
    "vq + EMA": dict(codebook_update="ema"),
    "vq + k-means + restart": dict(kmeans_init=True, dead_code_restart=True),
    "vq + l2 + 8-d codes": dict(codebook_l2_norm=True, codebook_dim=8),
    "vq + l2 + 8-d + restart": dict(codebook_l2_norm=True, codebook_dim=8, dead_code_restart=True),
    "vq + l2 + 8-d + entropy": dict(codebook_l2_norm=True, codebook_dim=8, entropy_loss_weight=0.1),
    "vq + rotation trick": dict(gradient_estimator="rotation"),
    "fsq [8,8,8,8,4]": dict(quantizer_type="fsq", fsq_levels=[8, 8, 8, 8, 4]),
    "lfq (entropy 0.1)": dict(quantizer_type="lfq", entropy_loss_weight=0.1),
    "residual_vq x2 + l2 + 8-d": dict(
        quantizer_type="residual_vq", num_quantizers=2, codebook_l2_norm=True, codebook_dim=8
    ),
}


def photo_crops(names: tuple[str, ...], count: int, resolution: int, seed: int) -> torch.Tensor:
    """`count` random square crops in [-1, 1], (count, 3, resolution, resolution): side 1/8 to 1/3 of the photo."""
    rng = np.random.default_rng(seed)
    photos = []
    for name in names:
        image = getattr(skdata, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
        photos.append(torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).float())
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        short = min(photo.shape[1:])
        side = int(rng.integers(short // 8, short // 3 + 1))
        top = int(rng.integers(0, photo.shape[1] - side + 1))
        left = int(rng.integers(0, photo.shape[2] - side + 1))
        crop = photo[None, :, top : top + side, left : left + side]
        crops.append(F.interpolate(crop, size=(resolution, resolution), mode="area", antialias=False)[0])
    return torch.stack(crops) / 127.5 - 1


def run_candidate(name: str, fields: dict, args, train: torch.Tensor, held_out: torch.Tensor) -> dict:
    torch.manual_seed(args.seed)
    config = VQGANConfig(
        block_out_channels=[16, 32, 64],
        down_block_types=["DownEncoderBlock2D"] * 3,
        layers_per_block=1,
        mid_block_add_attention=False,
        latent_channels=32,
        vq_embed_dim=32,
        norm_num_groups=8,
        sample_size=args.resolution,
        num_vq_embeddings=16384,
        codebook_usage_window=args.window,
        **fields,
    )
    model = VQGANModel(config).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for _ in range(args.steps):
        batch = train[torch.randint(0, train.shape[0], (args.batch_size,), generator=generator)]
        output = model(batch)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / args.steps
    measured = measure_reconstructions(model, to_uint8(held_out).split(64)).metrics
    return {
        "name": name,
        "psnr": measured["psnr"],
        "running_usage": float(output.running_usage),
        "dead_codes": int(output.dead_codes),
        "eval_usage": measured["codebook_usage"],
        "eval_perplexity": measured["perplexity"],
        "eval_tokens": measured["tokens"],
        "seconds_per_step": seconds,
    }


def _run_task(task: tuple) -> dict:
    return run_candidate(*task)


def _report(row: dict) -> dict:
    print(
        f"{row['name']:32s} PSNR {row['psnr']:.2f} dB  running usage {row['running_usage']:.3f}  "
        f"held-out usage {row['eval_usage']:.3f}  perplexity {row['eval_perplexity']:.0f}  "
        f"dead {row['dead_codes']}  {row['seconds_per_step']:.3f} s/step",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantizer_defaults.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--window", type=int, default=50, help="codebook_usage_window (training steps)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="candidates trained in parallel processes")
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument("--output", help="write the markdown table here too")
    args = parser.parse_args(argv)

    train = photo_crops(TRAIN_PHOTOS, 2048, args.resolution, seed=args.seed)
    held_out = photo_crops(EVAL_PHOTOS, 1024, args.resolution, seed=args.seed + 1)
    names = [name for name in CANDIDATES if not args.only or name in args.only]
    tasks = [(name, CANDIDATES[name], args, train, held_out) for name in names]
    if args.jobs > 1:
        # one candidate per worker process, one thread each: the candidates are independent
        with multiprocessing.get_context("spawn").Pool(
            args.jobs, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            rows = [_report(row) for row in pool.imap(_run_task, tasks)]
    else:
        rows = [_report(_run_task(task)) for task in tasks]

    tokens = rows[0]["eval_tokens"] if rows else 0
    lines = [
        "# Quantizer options at K = 16384 on real photos",
        "",
        f"Date: 2026-11-24. Hardware: {platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, "
        f"{args.jobs} candidate(s) at a time, 1 thread each (s/step is indicative only), torch {torch.__version__}.",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/quantizer_defaults.py --jobs {args.jobs} --steps {args.steps} "
        f"--batch-size {args.batch_size} --resolution {args.resolution} --window {args.window} --lr {args.lr} "
        f"--seed {args.seed} --output benchmarks/results/quantizer_defaults.md`",
        "",
        f"Model: VQGANModel, block_out_channels [16, 32, 64] (f4), 32-d latents, K = 16384, L1 loss only (no GAN), "
        f"Adam lr {args.lr}, batch {args.batch_size} of {args.resolution}² crops "
        f"({args.batch_size * (args.resolution // 4) ** 2} tokens/step), {args.steps} steps, seed {args.seed}. "
        f"Train photos: {', '.join(TRAIN_PHOTOS)}; held-out photos: {', '.join(EVAL_PHOTOS)} "
        f"(1024 crops, {tokens} tokens).",
        "",
        f"Running usage: fraction of the 16384 codes used in the last {args.window} training steps "
        f"(at most {min(1.0, args.window * args.batch_size * (args.resolution // 4) ** 2 / 16384):.2f} possible). "
        f"Held-out usage: fraction of codes used by the held-out tokens "
        f"(at most {min(1.0, tokens / 16384):.2f}). Perplexity: of the held-out code histogram.",
        "",
        "| option | PSNR (dB) | running usage | dead codes | held-out usage | held-out perplexity | s/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['psnr']:.2f} | {row['running_usage']:.3f} | {row['dead_codes']} | "
            f"{row['eval_usage']:.3f} | {row['eval_perplexity']:.0f} | {row['seconds_per_step']:.3f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
