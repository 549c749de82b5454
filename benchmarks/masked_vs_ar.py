"""The masked (MaskGIT) prior against hf-vq's autoregressive prior on the same Fashion-MNIST tokens (issue #25):
quality, sampling speed and editing.

1. Tokens: a VQ-VAE f4 at 32 px (8x8 = 64 ids of 256 codes) trained with `hf-vq train`, then `hf-vq tokenize` of
   the first `--train-images` training and `--test-images` test images.
2. Priors: `hf-vq train-prior --prior-type causal` and `--prior-type masked`, the same width, depth, heads, steps,
   batch, learning rate and seed, for each of `--seeds`. Parameters are equal but for the output head (the masked
   prior predicts image ids only, the causal one its whole vocabulary) and the [MASK] embedding row: both counted.
3. Quality: `hf_vq.evaluation.evaluate_prior` at guidance 1 and 3 (FID / KID on the pinned Inception protocol, class
   accuracy from a CNN probe trained on real training images), mean and 95% t-interval over the seeds. Each
   prior's held-out score is shown on its own: the causal prior's is an NLL, the masked prior's a masked-token
   cross-entropy, and the two are not comparable. The masked prior samples with its defaults (12 steps).
4. Speed: images / s of guided sampling (guidance 3, batch `--speed-batch`) of untrained priors of the same size,
   the masked one at 8, 12 and 16 steps against the causal one (KV cache), at 8x8 and 16x16 token grids (64 px images
   at f4 for the 16x16 grid), best of `--speed-iters`.
5. Editing (the first seed's masked prior): held-out images with the centre (16x16 of 32x32) or the right half
   masked, repainted with their own class at guidance 3 (`VQImagePipeline(image=, mask_image=, class_labels=)`):
   FID of the edited images against the real ones, class accuracy, and the pixels outside the mask compared with
   the tokenizer's plain reconstruction (the token ids there are bit-identical; pixels change only within the
   decoder's receptive field of the mask).

Goals (issue #25, on 2 CPU cores): at a 16x16 grid, sampling >= 5x faster than the causal prior; FID no worse than
the causal prior's beyond the seed interval; class accuracy at guidance 3 >= the causal prior's - 0.02.

    apt-get install dataset-fashion-mnist
    python benchmarks/masked_vs_ar.py --note "2 cores shared with other jobs"

Picks CUDA where there is one. `--reuse` keeps what `--workdir` already holds (tokenizer, tokens, priors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from common import emit, environment, pick_device

RESULTS = Path(__file__).resolve().parent / "results"
FAMILIES = ("causal", "masked")
GUIDANCE = (1.0, 3.0)
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 95% t quantiles by degrees of freedom


def build_parser(description: str = __doc__.split("\n")[0]) -> argparse.ArgumentParser:
    """The options of this benchmark (`masked_steps.py` adds its own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", default="outputs/masked_vs_ar")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tokenizer-steps", type=int, default=1000)
    parser.add_argument("--train-images", type=int, default=20000, help="training images tokenized")
    parser.add_argument("--test-images", type=int, default=1000, help="test images tokenized (held-out score)")
    parser.add_argument("--prior-steps", type=int, default=300)
    parser.add_argument("--prior-batch-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--num-images", type=int, default=100, help="N of every FID / KID / accuracy set")
    parser.add_argument("--probe-images", type=int, default=10000)
    parser.add_argument("--probe-epochs", type=float, default=1.0)
    parser.add_argument("--speed-batch", type=int, default=8)
    parser.add_argument("--speed-iters", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 12, 16], help="masked decoding steps timed")
    parser.add_argument("--fid-network", default=None, help="Inception file (default: the pinned fid-helper one)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--speed-only", action="store_true", help="only the sampling speed (no data, no training)")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--note", default="", help="a line for the result, e.g. that the cores were shared")
    parser.add_argument("--output", default=str(RESULTS / "masked_vs_ar.md"))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# ------------------------------------------------------------------------------------------------ stages


def run(argv: list[str]) -> None:
    from hf_vq.cli import main as cli

    if cli(argv) != 0:
        raise RuntimeError(f"hf-vq {shlex.join(argv)} failed")


def make_tokens(args, work: Path) -> Path:
    tokenizer, tokens = work / "tokenizer", work / "tokens"
    if not (args.reuse and (tokenizer / "config.json").is_file()):
        config = {"hidden_channels": 64, "residual_hidden_channels": 32, "latent_channels": 16}
        steps = str(args.tokenizer_steps)
        run(
            [
                "train",
                "--model-type",
                "vqvae",
                "--model-config",
                json.dumps({**config, "num_vq_embeddings": 256, "sample_size": 32}),
                "--dataset-name",
                "fashion_mnist",
                "--resolution",
                "32",
                "--max-train-steps",
                steps,
                "--train-batch-size",
                "32",
                "--learning-rate",
                "1e-3",
                "--checkpointing-steps",
                "0",
                "--eval-steps",
                steps,
                "--image-logging-steps",
                "0",
                "--report-to",
                "none",
                "--seed",
                "0",
                "--output-dir",
                str(tokenizer),
                "--overwrite-output-dir",
            ]
        )
    info = tokens / "tokens_info.json"
    if not (args.reuse and info.is_file() and "test" in json.loads(info.read_text()).get("splits", {})):
        for split, count in (("train", args.train_images), ("test", args.test_images)):
            run(
                [
                    "tokenize",
                    str(tokenizer),
                    "--dataset-name",
                    "fashion_mnist",
                    "--split",
                    split,
                    "--num-images",
                    str(count),
                    "--output",
                    str(tokens),
                    *(["--overwrite"] if split == "train" else []),
                ]
            )
    return tokens


def train_prior(args, tokens: Path, family: str, seed: int, folder: Path) -> float:
    if args.reuse and (folder / "model_index.json").is_file():
        return float("nan")
    start, steps = time.perf_counter(), str(args.prior_steps)
    run(
        [
            "train-prior",
            "--tokens",
            str(tokens),
            "--output-dir",
            str(folder),
            "--prior-type",
            family,
            "--max-train-steps",
            steps,
            "--train-batch-size",
            str(args.prior_batch_size),
            "--learning-rate",
            str(args.learning_rate),
            "--hidden-size",
            str(args.hidden_size),
            "--num-hidden-layers",
            str(args.layers),
            "--num-attention-heads",
            str(args.heads),
            "--position-embedding",
            "rope+2d",
            "--checkpointing-steps",
            "0",
            "--image-logging-steps",
            "0",
            "--num-samples-per-class",
            "1",
            "--eval-steps",
            steps,
            "--num-eval-examples",
            "500",
            "--report-to",
            "none",
            "--seed",
            str(seed),
            "--overwrite-output-dir",
        ]
    )
    return time.perf_counter() - start


class CachedInception(torch.nn.Module):
    """The Inception features of a batch computed once: the real, reconstruction and baseline sets are the same
    images in every `evaluate_prior` call of this script."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network, self.cache = network, {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(images.cpu().numpy().tobytes()).hexdigest() + str(tuple(images.shape))
        if key not in self.cache:
            self.cache[key] = self.network(images)
        return self.cache[key]


def make_evaluator(args, tokens: Path, device):
    """`evaluate(folder, seed) -> (evaluate_prior's entry, parameter count)` for a trained pipeline folder, with
    this benchmark's protocol (real held-out set, class probe, cached Inception); also returns those three and the
    real labels, which the editing benchmark reuses."""
    from hf_vq.data.tokenize import real_images
    from hf_vq.data.tokens import load_tokens, load_tokens_info, token_arrays
    from hf_vq.evaluation import evaluate_prior, train_class_probe
    from hf_vq.evaluation.fid import InceptionFeatureExtractor
    from hf_vq.loading import load_pipeline

    info = load_tokens_info(str(tokens))
    train_ids, train_labels = token_arrays(load_tokens(str(tokens), "train"), unflipped_only=True)
    test_ids, test_labels = token_arrays(load_tokens(str(tokens), "test"), unflipped_only=True)
    real, real_labels = real_images(info, "test", args.num_images)
    probe_images, probe_labels = real_images(info, "train", args.probe_images)
    probe = train_class_probe(probe_images, probe_labels, epochs=args.probe_epochs, seed=0)
    inception = CachedInception(InceptionFeatureExtractor.from_source(args.fid_network).to(device))

    def evaluate(folder: Path, seed: int) -> tuple[dict, int]:
        pipe = load_pipeline(str(folder), device=device)
        prior, tokenizer = pipe.transformer.eval(), pipe.vqvae.eval()
        entry = evaluate_prior(
            prior,
            tokenizer,
            train_tokens=train_ids,
            train_labels=train_labels,
            held_out_tokens=test_ids,
            held_out_labels=test_labels,
            held_out_images=real,
            class_probe=probe,
            guidance_scales=GUIDANCE,
            num_images=args.num_images,
            seed=seed,
            inception=inception,
        )
        return entry, sum(p.numel() for p in prior.parameters())

    return evaluate, real, real_labels, probe, inception


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95% t half-width (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, T_95.get(n - 1, 1.96) * sd / math.sqrt(n)


# ------------------------------------------------------------------------------------------------ speed


def sampling_speed(args, device) -> dict[str, dict[str, float]]:
    """images / s of guided sampling (guidance 3) per grid side and case."""
    from hf_vq.modeling import MaskedPriorConfig, VQPriorConfig, VQPriorForCausalLM, VQPriorForMaskedLM

    results = {}
    for side in (8, 16):
        fields = dict(
            token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 256}],
            image_size=4 * side,
            num_classes=10,
            hidden_size=args.hidden_size,
            intermediate_size=3 * args.hidden_size,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            position_embedding="rope+2d",
        )
        torch.manual_seed(0)
        causal = VQPriorForCausalLM(VQPriorConfig(**fields)).to(device).eval()
        masked = VQPriorForMaskedLM(MaskedPriorConfig(**fields)).to(device).eval()
        labels = [i % 10 for i in range(args.speed_batch)]
        cases = {"causal (KV cache)": (causal, {})}
        cases.update({f"masked, {steps} steps": (masked, {"num_inference_steps": steps}) for steps in args.steps})
        row = {}
        for name, (prior, options) in cases.items():

            def call(prior=prior, options=options, labels=labels):
                prior.generate_indices(class_labels=labels, guidance_scale=3.0, **options)

            call()  # warm-up
            best = float("inf")
            for _ in range(args.speed_iters):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                call()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best = min(best, time.perf_counter() - start)
            row[name] = args.speed_batch / best
        results[f"{side}x{side}"] = row
    return results


def speed_table(speed: dict[str, dict[str, float]]) -> list[str]:
    rows = ["| grid | case | images/s | vs causal |", "|---|---|---:|---:|"]
    for grid, row in speed.items():
        base = row["causal (KV cache)"]
        rows.extend(f"| {grid} | {name} | {value:.2f} | {value / base:.2f}x |" for name, value in row.items())
    return rows


def speed_report(args, speed: dict[str, dict[str, float]], seconds: float) -> str:
    ratio = speed["16x16"].get("masked, 12 steps", float("nan")) / speed["16x16"]["causal (KV cache)"]
    return f"""# Masked (MaskGIT) prior vs the autoregressive prior: sampling speed (issue #25)

{environment()}; Python {platform.python_version()}.
{args.note}
Command: `python {" ".join(shlex.quote(a) for a in sys.argv)}`

Guided sampling (guidance 3, batch {args.speed_batch}) of untrained priors (Llama {args.layers} layers x
{args.hidden_size}, {args.heads} heads, `rope+2d`, 256 codes, 10 classes), best of {args.speed_iters} after a
warm-up; the causal prior with its KV cache, the masked prior at {", ".join(map(str, args.steps))} steps.

{chr(10).join(speed_table(speed))}

Goal (16x16 grid, 12 steps): >= 5x the causal prior: {"met" if ratio >= 5 else "**not met**"} ({ratio:.1f}x).
Time: {seconds / 60:.1f} min.
"""


# ------------------------------------------------------------------------------------------------ editing


def editing(args, pipe, real, labels, probe, inception) -> dict[str, dict]:
    """Centre and right-half inpainting of held-out images with their own class at guidance 3."""
    from hf_vq.data import to_uint8
    from hf_vq.evaluation.metrics import frechet_distance

    n = len(real)
    pixels = real.float() / 255.0
    tokenizer = pipe.vqvae
    low, high = tokenizer.config.pixel_range
    with torch.no_grad():
        ids = tokenizer.encode_to_indices((pixels * (high - low) + low).to(tokenizer.device))
        reconstruction = to_uint8(tokenizer.decode_indices(ids), tokenizer.config.pixel_range).cpu()
    real_features = inception(real)
    masks = {"centre 16x16": torch.zeros(32, 32), "right half": torch.zeros(32, 32)}
    masks["centre 16x16"][8:24, 8:24] = 1.0
    masks["right half"][:, 16:] = 1.0
    out = {}
    for name, mask in masks.items():
        generator = torch.Generator(pipe.transformer.device).manual_seed(0)
        edited_ids = pipe(
            image=pixels,
            mask_image=mask,
            class_labels=labels.tolist(),
            guidance_scale=3.0,
            generator=generator,
            output_type="latent",
        ).images
        with torch.no_grad():
            edited = to_uint8(tokenizer.decode_indices(edited_ids), tokenizer.config.pixel_range).cpu()
        keep = pipe.transformer.tokens_under_mask(mask.bool()[None].expand(n, -1, -1)).cpu()
        same_ids = bool((edited_ids.flatten(1).cpu()[~keep] == ids.flatten(1).cpu()[~keep]).all())
        # Pixels outside the mask against the plain reconstruction, by distance (Chebyshev, px) from the mask.
        inside = mask.bool()
        distance = torch.full((32, 32), 99)
        for d in range(32):
            grown = torch.nn.functional.max_pool2d(inside[None, None].float(), 2 * d + 1, 1, d)[0, 0].bool()
            distance = torch.where(grown & (distance == 99), d, distance)
        changed = (edited.int() - reconstruction.int()).abs().amax(1) > 1  # (n, 32, 32), more than 1 level of 255
        outside = distance > 0
        farthest = int(distance[changed.any(0) & outside].max()) if (changed.any(0) & outside).any() else 0
        out[name] = {
            "fid": frechet_distance(real_features, inception(edited)),
            "class_accuracy": probe.accuracy(edited, labels),
            "ids_outside_bit_identical": same_ids,
            "pixels_outside_changed": float(changed[:, outside].float().mean()),
            "farthest_changed_pixel": farthest,
            "pixels_beyond_4px_changed": float(changed[:, distance > 4].float().mean()),
        }
    out["reconstruction"] = {"fid": frechet_distance(real_features, inception(reconstruction))}
    return out


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hf_vq.evaluation.generation import prior_row
    from hf_vq.loading import load_pipeline

    device = pick_device(args.device)
    if args.speed_only:
        clock = time.perf_counter()
        speed = sampling_speed(args, device)
        emit(speed_report(args, speed, time.perf_counter() - clock), args.output)
        return 0
    work = Path(args.workdir)
    clock, seconds = time.perf_counter(), {}
    tokens = make_tokens(args, work)
    seconds["tokens"] = time.perf_counter() - clock
    train_seconds = {}
    for seed in args.seeds:
        for family in FAMILIES:
            train_seconds[(family, seed)] = train_prior(args, tokens, family, seed, work / f"{family}-{seed}")
    seconds["priors"] = time.perf_counter() - clock - seconds["tokens"]

    clock = time.perf_counter()
    evaluate, real, real_labels, probe, inception = make_evaluator(args, tokens, device)
    results = {family: [] for family in FAMILIES}
    params = {}
    for seed in args.seeds:
        for family in FAMILIES:
            entry, params[family] = evaluate(work / f"{family}-{seed}", seed)
            results[family].append(entry)
    seconds["evaluation"] = time.perf_counter() - clock

    clock = time.perf_counter()
    speed = sampling_speed(args, device)
    seconds["speed"] = time.perf_counter() - clock
    clock = time.perf_counter()
    pipe = load_pipeline(str(work / f"masked-{args.seeds[0]}"), device=device)
    edits = editing(args, pipe, real, real_labels, probe, inception)
    seconds["editing"] = time.perf_counter() - clock

    # ------------------------------------------------------------------------------------------ report
    def cell(family, scale, key, factor=1.0, digits=2):
        mean, half = interval([r["rows"][prior_row(scale)][key] * factor for r in results[family]])
        return mean, half, f"{mean:.{digits}f} ± {half:.{digits}f}"

    quality = [
        f"| prior | guidance | FID (N={args.num_images}) | KID x1000 | class accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for family in FAMILIES:
        for scale in GUIDANCE:
            quality.append(
                f"| {family} | {scale:g} | {cell(family, scale, 'fid')[2]} | {cell(family, scale, 'kid', 1e3)[2]} | "
                f"{cell(family, scale, 'class_accuracy', 1, 3)[2]} |"
            )
    first = results[FAMILIES[0]][0]["rows"]
    quality.append(
        f"| reconstructions (ceiling) | | {first['reconstruction']['fid']:.2f} | "
        f"{first['reconstruction']['kid'] * 1e3:.2f} | {first['reconstruction']['class_accuracy']:.3f} |"
    )
    quality.append(
        f"| class-position marginal | | {first['class_position_marginal']['fid']:.2f} | "
        f"{first['class_position_marginal']['kid'] * 1e3:.2f} | "
        f"{first['class_position_marginal']['class_accuracy']:.3f} |"
    )
    scores = []
    for family in FAMILIES:
        mean, half = interval([r["held_out_score"]["nats_per_token"] for r in results[family]])
        metric = results[family][0]["held_out_score"]["metric"]
        scores.append(f"- {family}: held-out `{metric}` {mean:.3f} ± {half:.3f} nats per scored id")
    speed_rows = speed_table(speed)
    edit_rows = [
        f"| mask | FID (N={args.num_images}) | class accuracy | ids outside bit-identical | outside pixels "
        "changed | farthest changed pixel | changed beyond 4 px |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, row in edits.items():
        if name == "reconstruction":
            continue
        edit_rows.append(
            f"| {name} | {row['fid']:.2f} | {row['class_accuracy']:.3f} | {row['ids_outside_bit_identical']} | "
            f"{row['pixels_outside_changed']:.3f} | {row['farthest_changed_pixel']} px | "
            f"{row['pixels_beyond_4px_changed']:.4f} |"
        )

    fid_c, half_c, _ = cell("causal", 1.0, "fid")
    fid_m, half_m, _ = cell("masked", 1.0, "fid")
    acc_c = cell("causal", 3.0, "class_accuracy")[0]
    acc_m = cell("masked", 3.0, "class_accuracy")[0]
    fastest16 = (
        max(v for k, v in speed["16x16"].items() if k.startswith("masked")) / speed["16x16"]["causal (KV cache)"]
    )
    speed12 = speed["16x16"].get("masked, 12 steps", float("nan")) / speed["16x16"]["causal (KV cache)"]
    goals = [
        (f"16x16 sampling >= 5x the causal prior (12 steps: {speed12:.1f}x; best: {fastest16:.1f}x)", speed12 >= 5),
        (
            f"FID (guidance 1) no worse than causal beyond the seed interval ({fid_m:.2f} ± {half_m:.2f} vs "
            f"{fid_c:.2f} ± {half_c:.2f})",
            fid_m - half_m <= fid_c + half_c,
        ),
        (f"class accuracy at guidance 3 >= causal - 0.02 ({acc_m:.3f} vs {acc_c:.3f})", acc_m >= acc_c - 0.02),
    ]
    goal_lines = "\n".join(f"- {'met' if ok else '**not met**'}: {text}" for text, ok in goals)
    total = sum(seconds.values())
    text = f"""# Masked (MaskGIT) prior vs the autoregressive prior on Fashion-MNIST tokens (issue #25)

{environment()}; Python {platform.python_version()}.
{args.note}
Command: `python {" ".join(shlex.quote(a) for a in sys.argv)}`

Tokens: VQ-VAE f4 at 32 px, 256 codes, {args.tokenizer_steps} steps; {args.train_images} training images
(8x8 = 64 ids each), {args.test_images} test images. Priors: Llama {args.layers} layers x {args.hidden_size},
{args.heads} heads, positions `rope+2d`, {args.prior_steps} steps of batch {args.prior_batch_size}, learning rate
{args.learning_rate:g}, seeds {args.seeds}; parameters: causal {params.get("causal", 0):,}, masked
{params.get("masked", 0):,} (the heads differ). Masked sampling: 12 steps, choice temperature 4.5, confidence order.
Class probe: {args.probe_images} real training images, {args.probe_epochs:g} epoch(s); its accuracy on the
{len(real)} real held-out images: {first["real"]["class_accuracy"]:.3f} (the ceiling of the accuracy column).

## Quality (mean ± 95% t-interval over {len(args.seeds)} seeds)

{chr(10).join(quality)}

Held-out scores, each in its own family's terms (not comparable with each other: the causal prior's is an NLL of
the image, the masked prior's a masked-token cross-entropy at ratios 0.25 / 0.5 / 0.75 / 1.0):

{chr(10).join(scores)}

FID at N = {args.num_images} is strongly biased upwards; compare rows only with each other, and read KID beside it.

## Sampling speed (guidance 3, batch {args.speed_batch}, untrained priors of that size, best of {args.speed_iters})

{chr(10).join(speed_rows)}

## Editing (the seed-{args.seeds[0]} masked prior, {len(real)} held-out images, own class, guidance 3)

{chr(10).join(edit_rows)}

Reconstructions of the same images (what editing can at best give): FID {edits["reconstruction"]["fid"]:.2f}.
"Changed" pixels differ from the plain reconstruction by more than 1 of 255 levels; distance is Chebyshev from the
mask, in pixels.

## Goals

{goal_lines}

Time: {", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())}, total {total / 60:.1f} min.

<details><summary>All numbers (JSON)</summary>

```json
{json.dumps({"quality": results, "speed": speed, "editing": edits, "seconds": seconds}, indent=1, default=str)}
```

</details>
"""
    emit(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
