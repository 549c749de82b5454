"""Does the prior learn image structure? Fashion-MNIST from pixels to generated images on a CPU, measured against
the two token baselines and the tokenizer's own reconstructions.

Four stages, each what a user runs:

1. a tokenizer at 32 px (28 px images resized), `hf_vq.training.train(parse_args([...]))` = `hf-vq train`;
2. the train and test splits tokenized, `hf-vq tokenize` (`tokenize_main`);
3. a class-conditional prior trained on the train tokens, `hf-vq train-prior` (`train_prior_main`);
4. `hf_vq.evaluation.generation.evaluate_prior` at guidance 1 and 3: held-out NLL, FID / KID (the pinned Inception
   protocol) and class accuracy (a small CNN trained on the real training split), beside the unigram and
   class-position marginal baselines and the reconstructions of the held-out images (the ceiling).

Goals (issue #15): NLL >= 0.5 nats/token below the class-position marginal; FID below both baselines; class
accuracy with guidance at or above the marginal's. Writes a markdown result and a grid of generated samples (rows =
classes; left half guidance 1, right half guidance 3).

    apt-get install dataset-fashion-mnist   # the 70,000 images, offline
    python benchmarks/generation_quality.py --tokenizer-steps 2000 --prior-steps 1500 --num-images 250

The budget flags (`--tokenizer-steps`, `--prior-steps`, `--num-images`, `--probe-epochs`, `--train-images`,
`--test-images`) size the run; the defaults are meant to fit 30 minutes on 2 idle CPU cores (each stage prints its
minutes). Where the time goes: the prior (128 wide, 4 layers, 65-token sequences of batch 64) costs ~0.5 s a step;
Inception ~0.2 s per image, over 6 sets of `--num-images` (real, reconstructions, guidance 1 and 3, two baselines);
each of the 5 Fréchet distances ~10 s (2048-d). `--reuse` keeps the stages already finished in `--workdir`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from hf_vq.data import decode_image, fashion_mnist, prepare_image, to_pil
from hf_vq.evaluation.generation import (
    MARGINAL,
    REAL,
    RECONSTRUCTION,
    UNIGRAM,
    decode_tokens,
    evaluate_prior,
    generate_tokens,
    prior_row,
    train_class_probe,
)

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE_SIZE = 32
GUIDANCE = (1.0, 3.0)
# A small f4 VQ-VAE: 8x8 = 64 tokens per 32 px image, 256 codes (Fashion-MNIST's gray shapes need few).
TOKENIZER_CONFIG = {
    "hidden_channels": 64,
    "residual_hidden_channels": 32,
    "latent_channels": 16,
    "num_vq_embeddings": 256,
    "sample_size": IMAGE_SIZE,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    budget = parser.add_argument_group("budget")
    budget.add_argument("--tokenizer-steps", type=int, default=2000, help="tokenizer optimizer steps")
    budget.add_argument("--prior-steps", type=int, default=1500, help="prior optimizer steps")
    budget.add_argument("--num-images", type=int, default=250, help="N of every FID / KID / accuracy set")
    budget.add_argument(
        "--probe-epochs", type=float, default=2.0, help="class-probe passes over the 60k training images"
    )
    budget.add_argument("--train-images", type=int, default=None, help="use only the first N training images")
    budget.add_argument("--test-images", type=int, default=None, help="use only the first N test images (NLL, probe)")
    parser.add_argument("--tokenizer-batch-size", type=int, default=32)
    parser.add_argument("--prior-batch-size", type=int, default=64)
    parser.add_argument("--prior-hidden-size", type=int, default=128)
    parser.add_argument("--prior-layers", type=int, default=4)
    parser.add_argument("--prior-learning-rate", type=float, default=2e-3)
    parser.add_argument("--position-embedding", default="rope+2d", choices=["rope", "rope+2d"])
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workdir", default="outputs/generation_quality", help="data, tokenizer, tokens, prior")
    parser.add_argument("--reuse", action="store_true", help="keep the finished stages found in --workdir")
    parser.add_argument("--output", default=str(RESULTS / "generation_quality.md"), help="markdown result")
    parser.add_argument("--grid", default=str(RESULTS / "generation_quality_samples.png"), help="sample grid PNG")
    parser.add_argument("--fid-network", default=None, help="Inception file (default: the pinned fid-helper one)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ stages


def export_fashion_mnist(folder: Path, train_images: int | None) -> Path:
    """Fashion-MNIST as a parquet dataset folder (`data/{split}-*.parquet`, ClassLabel kept) that `hf-vq train` and
    `hf-vq tokenize` both read like any local dataset."""
    data = folder / "data"
    for split, count in (("train", train_images), ("test", None)):
        path = data / f"{split}-00000-of-00001.parquet"
        if not path.is_file():
            data.mkdir(parents=True, exist_ok=True)
            fashion_mnist.load_fashion_mnist(split, num_examples=count).to_parquet(str(path))
    return folder


def train_tokenizer(args, dataset: Path, output: Path) -> list[str]:
    from hf_vq.training import parse_args as train_args
    from hf_vq.training import train

    argv = [
        "--model-type",
        "vqvae",
        "--model-config",
        json.dumps(TOKENIZER_CONFIG),
        "--dataset-name",
        str(dataset),
        "--resolution",
        str(IMAGE_SIZE),
        "--max-train-steps",
        str(args.tokenizer_steps),
        "--train-batch-size",
        str(args.tokenizer_batch_size),
        "--learning-rate",
        "1e-3",
        "--adam-beta1",
        "0.9",
        "--adam-beta2",
        "0.99",
        "--lr-warmup-steps",
        "100",
        "--checkpointing-steps",
        "0",
        "--eval-steps",
        str(max(args.tokenizer_steps, 1)),
        "--image-logging-steps",
        "0",
        "--dataloader-num-workers",
        "1",
        "--report-to",
        "none",
        "--seed",
        str(args.seed),
        "--output-dir",
        str(output),
        "--overwrite-output-dir",
    ]
    if train(train_args(argv)) != 0:
        raise RuntimeError("tokenizer training stopped early (non-finite losses)")
    return ["hf-vq", "train", *argv]


def tokenize(dataset: Path, tokenizer: Path, output: Path, test_images: int | None) -> list[str]:
    from hf_vq.commands.tokenize import main as tokenize_main

    commands = []
    for split in ("train", "test"):
        argv = [str(tokenizer), "--dataset-name", str(dataset), "--split", split, "--output", str(output)]
        argv.append("--overwrite")
        argv += ["--num-images", str(test_images)] if split == "test" and test_images else []
        if tokenize_main(argv) != 0:
            raise RuntimeError(f"hf-vq tokenize failed on the {split} split")
        commands.append(["hf-vq", "tokenize", *argv])
    return commands


def train_prior(args, tokens: Path, output: Path) -> list[str]:
    from hf_vq.commands.train_prior import main as train_prior_main

    argv = [
        "--tokens",
        str(tokens),
        "--output-dir",
        str(output),
        "--overwrite-output-dir",
        "--max-train-steps",
        str(args.prior_steps),
        "--train-batch-size",
        str(args.prior_batch_size),
        "--learning-rate",
        str(args.prior_learning_rate),
        "--hidden-size",
        str(args.prior_hidden_size),
        "--num-hidden-layers",
        str(args.prior_layers),
        "--position-embedding",
        args.position_embedding,
        "--checkpointing-steps",
        "0",
        "--image-logging-steps",
        "0",
        "--eval-steps",
        str(max(args.prior_steps, 1)),
        "--num-eval-examples",
        "1000",
        "--report-to",
        "none",
        "--seed",
        str(args.seed),
    ]
    if train_prior_main(argv) != 0:
        raise RuntimeError("hf-vq train-prior failed")
    return ["hf-vq", "train-prior", *argv]


def real_images(split: str, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as the tokenizer saw it (RGB, 28 -> 32 px bicubic, as `hf-vq tokenize` prepares it): uint8 and
    labels."""
    from PIL import Image

    images, labels = fashion_mnist.load_fashion_mnist_arrays(split)
    count = len(labels) if count is None else min(count, len(labels))
    pixels = [prepare_image(decode_image(Image.fromarray(a, mode="L")), IMAGE_SIZE) for a in images[:count]]
    return torch.stack(pixels), torch.tensor(labels[:count], dtype=torch.long)


def sample_grid(prior, tokenizer, per_class: int, seed: int, path: Path) -> None:
    """Rows = classes; `per_class` samples at guidance 1, a gap, `per_class` at guidance 3."""
    classes = prior.config.num_classes
    labels = torch.arange(classes).repeat_interleave(per_class)
    halves = []
    for scale in GUIDANCE:
        ids = generate_tokens(prior, labels, guidance_scale=scale, seed=seed, tokenizer=tokenizer)
        halves.append(decode_tokens(tokenizer, ids, (IMAGE_SIZE, IMAGE_SIZE)))
    side, gap = IMAGE_SIZE + 2, 12
    grid = torch.full((3, classes * side, 2 * per_class * side + gap), 255, dtype=torch.uint8)
    for half, images in enumerate(halves):
        for i, image in enumerate(images):
            row, column = divmod(i, per_class)
            top, left = row * side, half * (per_class * side + gap) + column * side
            grid[:, top : top + IMAGE_SIZE, left : left + IMAGE_SIZE] = image.expand(3, -1, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = to_pil(grid)
    image.resize((2 * image.width, 2 * image.height), resample=0).save(path)  # nearest, 2x: readable 32 px tiles


# ------------------------------------------------------------------------------------------------ report


def goals(results: dict) -> list[tuple[str, bool, str]]:
    rows, nll = results["rows"], results["nll"]
    gap = nll[MARGINAL]["nats_per_token"] - nll["prior"]["nats_per_token"]
    out = [("NLL >= 0.5 nats/token below the class-position marginal", gap >= 0.5, f"{gap:.3f} nats/token below")]
    for scale in results["guidance_scales"]:
        fid = rows[prior_row(scale)]["fid"]
        worst = min(rows[UNIGRAM]["fid"], rows[MARGINAL]["fid"])
        out.append((f"FID below both baselines (guidance {scale:g})", fid < worst, f"{fid:.2f} vs {worst:.2f}"))
    guided = rows[prior_row(max(results["guidance_scales"]))]["class_accuracy"]
    marginal = rows[MARGINAL]["class_accuracy"]
    out.append(
        ("class accuracy with guidance >= the marginal's", guided >= marginal, f"{guided:.3f} vs {marginal:.3f}")
    )
    return out


def _number(value, digits: int = 2, scale: float = 1.0) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}"


def markdown(results: dict, args, commands: list[list[str]], stage_seconds: dict, grid: Path) -> str:
    rows, n = results["rows"], results["num_images"]
    probe = results["probe"] or {}
    names = {
        **{prior_row(s): f"prior, guidance {s:g}" for s in results["guidance_scales"]},
        UNIGRAM: "unigram baseline",
        MARGINAL: "class-position marginal baseline",
        RECONSTRUCTION: "reconstructions (ceiling)",
        REAL: "real held-out images",
    }
    table = [
        f"| images | NLL nats/token | NLL bits/token | FID (N={n}) | KID x1000 (± std) | class accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        row = rows[key]
        nll = row["nll"] or {}
        kid = "—" if row["kid"] is None else f"{row['kid'] * 1e3:.2f} ± {row['kid_std'] * 1e3:.2f}"
        table.append(
            f"| {label} | {_number(nll.get('nats_per_token'), 3)} | {_number(nll.get('bits_per_token'), 3)} | "
            f"{_number(row['fid'])} | {kid} | {_number(row['class_accuracy'], 3)} |"
        )
    checks = "\n".join(f"- {'met' if ok else '**not met**'}: {text} ({value})" for text, ok, value in goals(results))
    threads = torch.get_num_threads()
    hardware = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {threads} threads"
    stages = ", ".join(f"{k} {v / 60:.1f} min" for k, v in stage_seconds.items())
    run = " ".join(shlex.quote(a) for a in sys.argv)
    classes = ", ".join(fashion_mnist.CLASS_NAMES)
    steps = "\n".join(f"    {shlex.join(c)}" for c in commands)
    return f"""# Generation quality on Fashion-MNIST (issue #15)

{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {hardware}, {platform.python_version()}.
Command: `python {run}`

Tokenizer: VQ-VAE f4 at {IMAGE_SIZE} px ({json.dumps(TOKENIZER_CONFIG)}), {args.tokenizer_steps} steps; prior:
Llama {args.prior_layers} layers x {args.prior_hidden_size}, positions `{args.position_embedding}`,
{args.prior_steps} steps of batch {args.prior_batch_size}; {results["sequence_length"]} tokens per image. Held-out:
the test split ({results["num_nll_images"]} images for the NLL, the first {n} for FID / KID / accuracy, every set
generated for the same {n} labels). Sampling: temperature {args.temperature:g}, top-k {args.top_k}.
Class probe: a 3-conv CNN ({probe.get("width")} base channels), {args.probe_epochs:g} epochs on the real training
split; its accuracy on {probe.get("num_real_held_out_images")} real test images:
**{_number(probe.get("real_held_out_accuracy"), 3)}**.

{chr(10).join(table)}

Goals:

{checks}

FID at N = {n} is biased upwards (covariances of 2048-d features from {n} images); compare rows only with each other
at this N, and read KID (unbiased) beside it. NLL: held-out ids, class position excluded, each position's softmax over
its id range; baselines counted on the training ids with a pseudo-count of {results["protocol"]["baseline_smoothing"]}.

Samples: [{grid.name}]({grid.name}), rows = classes ({classes}); left 8 columns guidance 1, right 8 guidance 3.

Time: {stages}. Stage commands (what a user runs):

{steps}

<details><summary>All numbers (JSON)</summary>

```json
{json.dumps(results, indent=1)}
```
</details>
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not fashion_mnist.is_available():
        print("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    seconds, commands, clock = {}, [], time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        seconds[name] = time.perf_counter() - clock
        print(f"[generation_quality] {name}: {seconds[name] / 60:.1f} min", flush=True)
        clock = time.perf_counter()

    dataset = export_fashion_mnist(work / "fashion_mnist", args.train_images)
    stage("export")
    tokenizer_dir = work / "tokenizer"
    if not (args.reuse and (tokenizer_dir / "config.json").is_file()):
        commands.append(train_tokenizer(args, dataset, tokenizer_dir))
    stage("tokenizer")
    tokens_dir = work / "tokens"
    if not (args.reuse and (tokens_dir / "tokens_info.json").is_file()):
        commands += tokenize(dataset, tokenizer_dir, tokens_dir, args.test_images)
    stage("tokenize")
    prior_dir = work / "prior"
    if not (args.reuse and (prior_dir / "model_index.json").is_file()):
        commands.append(train_prior(args, tokens_dir, prior_dir))
    stage("prior")

    from hf_vq.data.tokens import load_tokens, token_arrays
    from hf_vq.pipelines import VQImagePipeline

    pipe = VQImagePipeline.from_pretrained(str(prior_dir))
    prior, tokenizer = pipe.transformer.eval(), pipe.vqvae.eval()
    train_ids, train_labels = token_arrays(load_tokens(str(tokens_dir), "train"), unflipped_only=True)
    test_ids, test_labels = token_arrays(load_tokens(str(tokens_dir), "test"), unflipped_only=True)
    train_images, train_image_labels = real_images("train", args.train_images)
    probe = train_class_probe(train_images[:, :1], train_image_labels, epochs=args.probe_epochs, seed=args.seed)
    del train_images
    stage("probe")
    held_out_images, _ = real_images("test", len(test_ids))  # the probe's test set; the first N are FID's reference
    results = evaluate_prior(
        prior,
        tokenizer,
        train_tokens=train_ids,
        train_labels=train_labels,
        held_out_tokens=test_ids,
        held_out_labels=test_labels,
        held_out_images=held_out_images,
        class_probe=probe,
        guidance_scales=GUIDANCE,
        num_images=args.num_images,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        fid_network=args.fid_network,
    )
    stage("evaluate")
    grid = Path(args.grid)
    sample_grid(prior, tokenizer, 8, args.seed, grid)
    stage("grid")
    seconds["total"] = sum(seconds.values())
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(results, args, commands, seconds, grid))
    for text, ok, value in goals(results):
        print(f"{'met' if ok else 'NOT MET'}: {text} ({value})")
    print(f"{output}  {grid}  total {seconds['total'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
