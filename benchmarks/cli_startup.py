"""Start-up: how long `hf-vq --help` takes, against the interpreter's floor and against what it cost when
`import hf_vq` imported the models (transformers' `PreTrainedModel`, torch).

    python benchmarks/cli_startup.py --repeats 5 --output benchmarks/results/cli_startup_cpu.md

Each case is a fresh process, timed from start to exit (best of `--repeats`), one at a time:

- `hf-vq --help`: the console script as a user runs it;
- `python -c pass`: the interpreter alone, the floor no command goes under;
- `import hf_vq.modeling`: what every `hf-vq` call paid before the command rooms were made lazy (#23), and what a
  command that touches a model still pays.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import time

from common import emit

CASES = {
    "hf-vq --help": [shutil.which("hf-vq") or "hf-vq", "--help"],
    "python -c pass": [sys.executable, "-c", "pass"],
    "import hf_vq.modeling": [sys.executable, "-c", "import hf_vq.modeling"],
}


def best_time(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the best is reported")
    parser.add_argument("--output", default=None, help="also write the markdown table here")
    args = parser.parse_args()
    seconds = {name: best_time(argv, args.repeats) for name, argv in CASES.items()}
    help_time = seconds["hf-vq --help"]
    rows = [
        f"| case | best of {args.repeats} (s) | vs `hf-vq --help` |",
        "|---|---:|---:|",
        *(f"| `{name}` | {value:.2f} | {value / help_time:.1f}x |" for name, value in seconds.items()),
    ]
    title = (
        f"## CLI start-up, {time.strftime('%Y-%m-%d', time.gmtime())}: {platform.machine()}, "
        f"Python {platform.python_version()}, fresh processes one at a time"
    )
    emit("\n".join([title, "", *rows]), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
