"""Shared pieces of the hf-vq benchmarks: device choice, the peer models, timing and peak-memory measurement.

Every benchmark script measures ours and the peer in one invocation. Each case runs in its own fresh worker
process (`python <script> --worker <case> ...`) so that one case's allocator state cannot hide or inflate another's
memory, then the parent prints one table with the ratios.

How peak memory is measured:

- CUDA: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`: the most tensor memory the worker
  held at once (weights, gradients, optimizer state and activations).
- CPU: the worker's resident-set high-water mark (`VmHWM` in `/proc/self/status`, reset through
  `/proc/self/clear_refs` after the imports) minus its resident set before building anything. It counts the same
  things as on CUDA, plus allocator slack; tracemalloc cannot be used because it does not see torch's allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# The taming f16 / 16384-code VQ-GAN (ImageNet, `vqgan_imagenet_f16_16384`), as diffusers' `VQModel` spells it.
TAMING_F16_16384 = dict(
    block_out_channels=[128, 128, 256, 256, 512],
    down_block_types=["DownEncoderBlock2D"] * 4 + ["AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 4,
    layers_per_block=2,
    latent_channels=256,
    num_vq_embeddings=16384,
    vq_embed_dim=256,
    norm_num_groups=32,
    sample_size=256,
)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_pair(architecture: dict, device: torch.device):
    """Our `VQGANModel` and a `diffusers.VQModel` with the same config, holding the same weights."""
    from diffusers import VQModel

    from hf_vq.modeling import VQGANConfig, VQGANModel

    torch.manual_seed(0)
    ours = VQGANModel(VQGANConfig(**architecture))
    peer = VQModel(**architecture)
    # Our quantizer may carry extra bookkeeping buffers (usage counters); every weight must load one to one.
    missing, unexpected = peer.load_state_dict(ours.state_dict(), strict=False)
    parameters = {name for name, _ in ours.named_parameters()}
    if missing or parameters.intersection(unexpected):
        raise RuntimeError(f"weights do not map onto diffusers.VQModel: missing {missing}, unexpected {unexpected}")
    return ours.to(device), peer.to(device)


def build_one(which: str, architecture: dict, device: torch.device, channels_last: bool):
    ours, peer = build_pair(architecture, device)
    model = ours if which == "ours" else peer
    del ours, peer
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def time_it(step: Callable[[], object], device: torch.device, *, warmup: int, iters: int) -> float:
    """Fastest seconds per call of `step` over `iters` calls, after `warmup` calls.

    The minimum, not the mean: on a shared machine the other processes only ever add time, so the fastest call is
    the best estimate of what the code itself costs.
    """
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


class PeakMemory:
    """Peak memory of everything the worker allocates after `start()` (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _status_kib(field: str) -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"{field} not in /proc/self/status")

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            try:  # reset the high-water mark to the current resident set (Linux >= 4.0)
                with open("/proc/self/clear_refs", "w") as clear_refs:
                    clear_refs.write("5")
            except OSError:
                pass
            self.baseline = self._status_kib("VmRSS") * 1024

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        return self._status_kib("VmHWM") * 1024 - self.baseline


def environment() -> str:
    import diffusers
    import transformers

    device = (
        "CUDA " + torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    return (
        f"{device}; torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"transformers {transformers.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default=None, help="cpu or cuda; default: cuda when available")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument(
        "--repeats", type=int, default=1, help="run each worker this many times (interleaved), keep the fastest"
    )
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def parse_with_device_defaults(parser: argparse.ArgumentParser, argv: list[str], *, gpu: dict, cpu: dict):
    """Parses `argv`; sizes left unset (batch size, resolution, warm-up, iterations) take the GPU or CPU defaults.
    Returns the arguments and whether the run is on a GPU."""
    args = parser.parse_args(argv)
    on_gpu = pick_device(args.device).type == "cuda"
    for name, value in (gpu if on_gpu else cpu).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args, on_gpu


def run_cases(script: str, cases: list[str], argv: list[str], repeats: int) -> dict[str, dict]:
    """Runs each case in a fresh worker process, interleaving the repeats, and keeps each case's fastest run."""
    results: dict[str, dict] = {}
    for _ in range(repeats):
        for case in cases:
            completed = subprocess.run(
                [sys.executable, script, "--worker", case, *argv], capture_output=True, text=True, check=False
            )
            if completed.returncode != 0:
                sys.stderr.write(completed.stderr)
                raise RuntimeError(f"worker {case!r} failed with exit code {completed.returncode}")
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            fastest = results.get(case, {}).get("seconds", float("inf"))
            if case not in results or result.get("seconds", float("inf")) < fastest:
                results[case] = result
    return results


def report_worker(seconds: float, peak_bytes: int, items: int, **extra) -> None:
    """Prints the worker's result as the last stdout line, for `run_cases`."""
    print(json.dumps(dict(seconds=seconds, peak_bytes=peak_bytes, items_per_s=items / seconds, **extra)))


def format_table(title: str, rows: list[tuple[str, dict]], reference: dict[str, str], unit: str = "images/s") -> str:
    """A markdown table: one row per case, with speed and memory ratios against the case named in `reference`."""
    by_name = dict(rows)
    lines = [
        f"### {title}",
        "",
        f"| case | {unit} | peak memory (MiB) | speed vs peer | memory vs peer |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in rows:
        peer = by_name.get(reference.get(name, ""))
        speed = f"{result['items_per_s'] / peer['items_per_s']:.2f}x" if peer else ""
        memory = f"{result['peak_bytes'] / max(peer['peak_bytes'], 1):.2f}x" if peer else ""
        lines.append(
            f"| {name} | {result['items_per_s']:.2f} | {result['peak_bytes'] / 2**20:.0f} | {speed} | {memory} |"
        )
    return "\n".join(lines)


def emit(text: str, markdown: str | None) -> None:
    print(text)
    if markdown:
        os.makedirs(os.path.dirname(os.path.abspath(markdown)), exist_ok=True)
        with open(markdown, "w") as handle:
            handle.write(text + "\n")
