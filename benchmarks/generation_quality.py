"""Does the prior learn image structure, and what does the README's generation flow give? Fashion-MNIST from pixels
to generated images on a CPU, measured against the two token baselines and the tokenizer's own reconstructions.

The flow is the README's: the bash block of "Generate images: a prior over the tokens" is read from README.md and
each line run as written (`hf_vq.cli.main`, the `hf-vq` entry point) inside `--workdir`, so the numbers published
beside that block are the ones its commands give:

1. `hf-vq train`: a VQ-VAE tokenizer at 32 px (28 px images resized);
2. `hf-vq tokenize`: the train split (with `--flip`) and the test split;
3. `hf-vq train-prior`: a class-conditional prior on the train tokens (held-out NLL on the test tokens);
4. `hf-vq generate`: a grid of samples;

then `hf_vq.evaluation.generation.evaluate_prior` at guidance 1 and 3: held-out NLL, FID / KID (the pinned
Inception protocol) and class accuracy (a small CNN trained on the real training split), beside the unigram and
class-position marginal baselines and the reconstructions of the held-out images (the ceiling).

Goals (issue #15): NLL >= 0.5 nats/token below the class-position marginal; FID below both baselines; class
accuracy with guidance at or above the marginal's. Writes a markdown result and a grid of generated samples (rows =
classes; left half guidance 1, right half guidance 3).

    apt-get install dataset-fashion-mnist   # the 70,000 images, offline
    python benchmarks/generation_quality.py

`--append COMMAND=FLAGS` adds flags to one of the README's commands (the last of a flag given twice wins), e.g.
`--append "train-prior=--max-train-steps 20"` for a quick check of this script; a result made so says it is not the
README's flow. `--reuse` skips the commands whose output is already in `--workdir`. Where the time goes on 2 idle
CPU cores: the tokenizer ~0.1 s a step, the prior (128 wide, 4 layers, 65-token sequences of batch 64) ~0.35 s a
step, Inception ~0.2 s per image over 6 sets of `--num-images`, each of the 5 Frechet distances ~10 s (2048-d).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README_SECTION = "Generate images: a prior over the tokens"
IMAGE_SIZE = 32
GUIDANCE = (1.0, 3.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="COMMAND=FLAGS",
        help="flags added to one README command (e.g. 'train-prior=--max-train-steps 20'); repeatable",
    )
    parser.add_argument("--num-images", type=int, default=250, help="N of every FID / KID / accuracy set")
    parser.add_argument(
        "--probe-epochs", type=float, default=2.0, help="class-probe passes over the 60k training images"
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workdir", default="outputs/generation_quality", help="where the README's commands run")
    parser.add_argument("--reuse", action="store_true", help="skip the commands whose output is in --workdir")
    parser.add_argument("--note", default="", help="a line for the result, e.g. that the cores were shared")
    parser.add_argument("--output", default=str(RESULTS / "generation_quality.md"), help="markdown result")
    parser.add_argument("--grid", default=str(RESULTS / "generation_quality_samples.png"), help="sample grid PNG")
    parser.add_argument("--fid-network", default=None, help="Inception file (default: the pinned fid-helper one)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ the flow


def readme_flow(readme: Path = ROOT / "README.md") -> list[list[str]]:
    """The `hf-vq` commands of the README's generation block, each as its argv (without `hf-vq`)."""
    section = readme.read_text().split(f"## {README_SECTION}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words[1:] for words in commands if words and words[0] == "hf-vq"]


def flow_outputs(commands: list[list[str]]) -> dict[str, str]:
    """Where the flow leaves its results: the tokenizer, the token set and the pipeline folders."""

    def value(command: list[str], flag: str) -> str:
        return command[len(command) - 1 - command[::-1].index(flag) + 1]

    by_name = {c[0]: c for c in commands}
    return {
        "tokenizer": value(by_name["train"], "--output-dir"),
        "tokens": value(by_name["train-prior"], "--tokens"),
        "pipeline": value(by_name["train-prior"], "--output-dir"),
    }


def run_flow(commands: list[list[str]], appended: dict[str, list[str]], reuse: bool, stage) -> list[list[str]]:
    """Runs each command in the current folder (the workdir); returns them as run."""
    from hf_vq.cli import main as cli

    outputs, ran = flow_outputs(commands), []
    done = {
        "train": Path(outputs["tokenizer"], "config.json"),
        "train-prior": Path(outputs["pipeline"], "model_index.json"),
    }
    for command in commands:
        argv = [*command, *appended.get(command[0], [])]
        if reuse and command[0] in done and done[command[0]].is_file():
            continue
        if reuse and command[0] == "tokenize" and _split_done(outputs["tokens"], argv):
            continue
        if cli(argv) != 0:
            raise RuntimeError(f"hf-vq {shlex.join(argv)} failed")
        ran.append(argv)
        stage(f"{command[0]} {'test' if 'test' in argv else ''}".strip())
    return ran


def _split_done(tokens: str, argv: list[str]) -> bool:
    split = argv[argv.index("--split") + 1] if "--split" in argv else "train"
    info = Path(tokens, "tokens_info.json")
    return info.is_file() and json.loads(info.read_text()).get("splits", {}).get(split, {}).get("complete", False)


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
    steps = "\n".join(f"    hf-vq {shlex.join(c)}" for c in commands)
    prior = results["prior_config"]
    as_written = (
        "the README's commands as written" if not args.append else "NOT the README's flow: " + "; ".join(args.append)
    )
    return f"""# Generation quality on Fashion-MNIST (issue #15): the README's generation flow

{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {hardware}, {platform.python_version()}.
{args.note}
Command: `python {run}` ({as_written}).

Tokenizer: {results["tokenizer_description"]}; prior: Llama {prior["num_hidden_layers"]} layers x
{prior["hidden_size"]}, {results["sequence_length"]} tokens per image. Held-out: the test split
({results["num_nll_images"]} images for the NLL, the first {n} for FID / KID / accuracy, every set generated for
the same {n} labels). Sampling: temperature {args.temperature:g}, top-k {args.top_k}. Class probe: a 3-conv CNN
({probe.get("width")} base channels), {args.probe_epochs:g} epochs on the real training split; its accuracy on
{probe.get("num_real_held_out_images")} real test images: **{_number(probe.get("real_held_out_accuracy"), 3)}**.

{chr(10).join(table)}

Goals:

{checks}

FID at N = {n} is biased upwards (covariances of 2048-d features from {n} images); compare rows only with each other
at this N, and read KID (unbiased) beside it. NLL: held-out ids, class position excluded, each position's softmax over
its id range; baselines counted on the training ids with a pseudo-count of {results["protocol"]["baseline_smoothing"]}.

Samples: [{grid.name}]({grid.name}), rows = classes ({classes}); left 8 columns guidance 1, right 8 guidance 3.

Time: {stages}. The commands, run in `{args.workdir}`:

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
    appended = {}
    for entry in args.append:
        name, _, flags = entry.partition("=")
        appended.setdefault(name, []).extend(shlex.split(flags))
    commands = readme_flow()
    seconds, clock = {}, time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        seconds[name] = time.perf_counter() - clock
        print(f"[generation_quality] {name}: {seconds[name] / 60:.1f} min", flush=True)
        clock = time.perf_counter()

    grid, output = Path(args.grid).resolve(), Path(args.output).resolve()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # the README's relative paths (outputs/fm-...) land in the workdir
    ran = run_flow(commands, appended, args.reuse, stage)
    outputs = flow_outputs(commands)

    from hf_vq.data.tokens import load_tokens, token_arrays
    from hf_vq.pipelines import VQImagePipeline

    pipe = VQImagePipeline.from_pretrained(outputs["pipeline"])
    prior, tokenizer = pipe.transformer.eval(), pipe.vqvae.eval()
    train_ids, train_labels = token_arrays(load_tokens(outputs["tokens"], "train"), unflipped_only=True)
    test_ids, test_labels = token_arrays(load_tokens(outputs["tokens"], "test"), unflipped_only=True)
    train_images, train_image_labels = real_images("train", len(train_ids))
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
    sample_grid(prior, tokenizer, 8, args.seed, grid)
    stage("grid")
    seconds["total"] = sum(seconds.values())
    config = tokenizer.config
    results["prior_config"] = {k: getattr(prior.config, k) for k in ("hidden_size", "num_hidden_layers")}
    results["tokenizer_description"] = (
        f"{type(tokenizer).__name__} f{config.downsampling_factor} at {IMAGE_SIZE} px, "
        f"{tokenizer.token_layout.levels[0].codebook_size} codes"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(results, args, ran or [["(all reused)"]], seconds, grid))
    for text, ok, value in goals(results):
        print(f"{'met' if ok else 'NOT MET'}: {text} ({value})")
    print(f"{output}  {grid}  total {seconds['total'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
