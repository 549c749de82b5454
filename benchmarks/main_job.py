"""The README's main job, `hf-vq train` with its defaults, over several seeds: wall time, peak memory and the
held-out quality `hf-vq evaluate OUT --dataset-name builtin` gives, with the spread across seeds.

    python benchmarks/main_job.py --seeds 0 1 2 --markdown benchmarks/results/main_job_cpu.md

Each seed runs `hf-vq train --seed N` as a fresh process (one at a time: time it on an idle machine), then
`hf-vq evaluate` on the 15 held-out views of the built-in photos. Peak memory is the largest resident set of the
training process or any of its loader workers (`getrusage` of the waited children, like `/usr/bin/time -v`), read
in a small wrapper process per seed so that seeds do not share a maximum.

There is no peer beside it: the numbers back the README's "What the main job gives", which compares the main job
with its own earlier settings. Those comparisons are single runs; this script gives the spread they sit in.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import emit, environment

METRICS = [("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("lpips", "LPIPS (AlexNet)", "{:.3f}")]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default="outputs/main_job", help="one training folder per seed")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "hf_vq.cli", *arguments]


def train_one(seed: int, output: Path) -> None:
    """In the wrapper process: trains one seed and prints its wall time and peak memory as the last line."""
    start = time.perf_counter()
    completed = subprocess.run(cli("train", "--seed", str(seed), "--output-dir", str(output)), check=False)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"hf-vq train --seed {seed} failed with exit code {completed.returncode}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_bytes": peak_kib * 1024}))


def run_seed(seed: int, workdir: Path) -> dict:
    output = workdir / f"seed-{seed}"
    shutil.rmtree(output, ignore_errors=True)
    wrapper = subprocess.run(
        [sys.executable, __file__, "--worker", str(seed), "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result = json.loads(wrapper.stdout.strip().splitlines()[-1])
    scores = output / "eval_builtin.json"
    subprocess.run(
        cli("evaluate", str(output), "--dataset-name", "builtin", "--no-card", "--output", str(scores)), check=True
    )
    result.update(json.loads(scores.read_text())["metrics"])
    return result


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def table(results: dict[int, dict]) -> str:
    header = "| seed | time | peak memory (GiB) | " + " | ".join(title for _, title, _ in METRICS) + " |"
    lines = [header, "|---" + "|---:" * (2 + len(METRICS)) + "|"]
    for seed, result in results.items():
        cells = [minutes(result["seconds"]), f"{result['peak_bytes'] / 2**30:.2f}"]
        cells += [fmt.format(result[key]) for key, _, fmt in METRICS]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        runs = list(results.values())
        peak = max(r["peak_bytes"] for r in runs)
        cells = [minutes(statistics.mean(r["seconds"] for r in runs)), f"{peak / 2**30:.2f}"]
        for key, _, fmt in METRICS:
            values = [r[key] for r in runs]
            cells.append(f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}")
        lines.append("| mean ± sd (memory: max) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    workdir = Path(args.workdir)
    if args.worker is not None:
        train_one(args.worker, workdir / f"seed-{args.worker}")
        return 0
    workdir.mkdir(parents=True, exist_ok=True)
    started = environment()
    results = {seed: run_seed(seed, workdir) for seed in args.seeds}
    text = "\n".join(
        [
            "## The main job: `hf-vq train` with its defaults, then `hf-vq evaluate OUT --dataset-name builtin`",
            "",
            f"{started}; one seed at a time, each a fresh process. "
            "Held-out: the 15 views of the built-in eval photos.",
            "",
            table(results),
        ]
    )
    emit(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
