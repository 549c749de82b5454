"""Which image positions should the prior use: Llama's 1-D RoPE alone, or RoPE plus a learned row + column
embedding (`--position-embedding rope+2d`, the 2-D prior LlamaGen gets from 2-D RoPE)? Issue #15 asks to measure.

The same class-conditional prior, trained on the same Fashion-MNIST tokens for the same steps, once per arm and
seed; the seed sets the initialisation and the batch order, and is shared by the two arms, so the comparison is
paired. Scored by the held-out NLL of the whole test split (`hf_vq.evaluation.generation.prior_nll`, nats per
token over each position's own id range, what `hf-vq evaluate-prior` reports), with a paired t-test over seeds.

    apt-get install dataset-fashion-mnist
    python benchmarks/generation_quality.py ...     # once: writes outputs/generation_quality/tokens (reused here)
    python benchmarks/prior_positions.py --prior-steps 400 --seeds 0 1 2

Tokens missing from `--workdir` are made the way generation_quality.py makes them (tokenizer, then `hf-vq tokenize`).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generation_quality as gq

ARMS = ("rope", "rope+2d")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prior-steps", type=int, default=400)
    parser.add_argument("--prior-batch-size", type=int, default=64)
    parser.add_argument("--prior-hidden-size", type=int, default=128)
    parser.add_argument("--prior-layers", type=int, default=4)
    parser.add_argument("--prior-learning-rate", type=float, default=2e-3)
    parser.add_argument("--tokenizer-steps", type=int, default=2000, help="only if the tokens must be made")
    parser.add_argument("--tokenizer-batch-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=None, help="only if the tokens must be made")
    parser.add_argument("--test-images", type=int, default=None, help="only if the tokens must be made")
    parser.add_argument("--workdir", default="outputs/generation_quality", help="where the tokens are (or go)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", default=str(RESULTS / "prior_positions.md"), help="markdown result")
    return parser.parse_args(argv)


def tokens_dir(args) -> Path:
    """The workdir's Fashion-MNIST tokens, made first when absent by the README's generation commands up to the
    prior (train, tokenize both splits), run as generation_quality.py runs them, in the workdir."""
    from hf_vq.cli import main as cli

    work = Path(args.workdir)
    commands = gq.readme_flow()
    tokens = work / gq.flow_outputs(commands)["tokens"]
    if not (tokens / "tokens_info.json").is_file():
        work.mkdir(parents=True, exist_ok=True)
        here = Path.cwd()
        os.chdir(work)
        try:
            for command in (c for c in commands if c[0] in ("train", "tokenize")):
                if cli(command) != 0:
                    raise RuntimeError(f"hf-vq {' '.join(command)} failed")
        finally:
            os.chdir(here)
    return tokens


def train_prior(args, tokens: Path, output: Path) -> None:
    """`hf-vq train-prior` on `tokens` with this benchmark's sizes, seed and position embedding."""
    from hf_vq.cli import main as cli

    argv = ["train-prior", "--tokens", str(tokens), "--output-dir", str(output), "--overwrite-output-dir"]
    argv += ["--max-train-steps", str(args.prior_steps), "--train-batch-size", str(args.prior_batch_size)]
    argv += ["--hidden-size", str(args.prior_hidden_size), "--num-hidden-layers", str(args.prior_layers)]
    argv += ["--learning-rate", str(args.prior_learning_rate), "--seed", str(args.seed)]
    argv += ["--position-embedding", args.position_embedding, "--report-to", "none"]
    if cli(argv) != 0:
        raise RuntimeError(f"hf-vq {' '.join(argv)} failed")


def held_out_nll(prior_dir: Path, tokens: Path) -> float:
    from hf_vq.data.tokens import load_tokens, token_arrays
    from hf_vq.evaluation.generation import prior_nll
    from hf_vq.pipelines import VQImagePipeline

    prior = VQImagePipeline.from_pretrained(str(prior_dir)).transformer.eval()
    ids, labels = token_arrays(load_tokens(str(tokens), "test"), unflipped_only=True)
    with torch.no_grad():
        return float(prior_nll(prior, ids, labels)["nats_per_token"])


def paired(rope: list[float], rope2d: list[float]) -> tuple[float, float, float]:
    """Mean of rope+2d − rope, its 95% t half-width, and the paired t-test's p (nan for one seed)."""
    from scipy import stats

    diff = np.asarray(rope2d) - np.asarray(rope)
    if len(diff) < 2:
        return float(diff.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    return float(diff.mean()), float(half), float(stats.ttest_rel(rope2d, rope).pvalue)


def markdown(args, argv, nll: dict, seconds: dict) -> str:
    mean, half, p = paired(nll["rope"], nll["rope+2d"])
    better = "rope+2d" if mean < 0 else "rope"
    verdict = (
        f"**{better}** is better by {abs(mean):.4f} nats/token (95% interval ±{half:.4f}, p = {p:.3g})."
        if not math.isnan(p)
        else f"one seed: rope+2d − rope = {mean:+.4f} nats/token (no test)."
    )
    lines = [
        "# Prior positions: 1-D RoPE against RoPE + learned row/column embeddings",
        "",
        f"- date: {datetime.date.today()}; machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads; torch {torch.__version__}",
        f"- command: `python benchmarks/prior_positions.py {' '.join(argv)}`",
        f"- prior: {args.prior_layers} layers × {args.prior_hidden_size} wide, {args.prior_steps} steps of batch "
        f"{args.prior_batch_size}, lr {args.prior_learning_rate}; tokens: `{args.workdir}/tokens` (Fashion-MNIST, "
        "8×8 grid at 32 px)",
        "- score: held-out NLL of the whole test split, nats/token (lower is better)",
        "",
        "| seed | rope | rope+2d | rope+2d − rope |",
        "|---:|---:|---:|---:|",
    ]
    for seed, a, b in zip(args.seeds, nll["rope"], nll["rope+2d"]):
        lines.append(f"| {seed} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    lines += [
        f"| mean | {np.mean(nll['rope']):.4f} | {np.mean(nll['rope+2d']):.4f} | {mean:+.4f} |",
        "",
        verdict,
        "",
        f"Time: {seconds['total'] / 60:.1f} min ({seconds['per_run'] / 60:.1f} min per prior).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    tokens = tokens_dir(args)
    nll: dict[str, list[float]] = {arm: [] for arm in ARMS}
    runs = 0
    for seed in args.seeds:
        for arm in ARMS:
            output = Path(args.workdir) / f"prior_positions_{arm.replace('+', '_')}_seed{seed}"
            run_args = argparse.Namespace(**{**vars(args), "seed": seed, "position_embedding": arm})
            train_prior(run_args, tokens, output)
            nll[arm].append(held_out_nll(output, tokens))
            runs += 1
            print(f"seed {seed} {arm}: held-out NLL {nll[arm][-1]:.4f} nats/token", flush=True)
    total = time.perf_counter() - start
    text = markdown(args, argv, nll, {"total": total, "per_run": total / max(runs, 1)})
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
