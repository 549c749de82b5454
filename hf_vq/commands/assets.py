"""`hf-vq assets`: prepares every offline asset (LPIPS weights, the FID Inception network, the built-in photos)
and prints where each is, or how to get it; exit status 1 if any is missing."""

from __future__ import annotations

from ..parsing import CommandParser


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq assets",
        description="Prepare the offline assets (LPIPS VGG16/AlexNet weights, the FID Inception network, the "
        "built-in photos) and report where each is, or how to get it.",
    )
    parser.add_argument("--cache-dir", default=None, help="where converted LPIPS weights go (default: $HF_VQ_CACHE)")
    parser.add_argument("--lpips-repo", default=None, help="Hub repo holding lpips_{net}.safetensors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..evaluation import prepare_assets

    statuses = prepare_assets(cache_dir=args.cache_dir, lpips_repo=args.lpips_repo)
    width = max(len(status.asset) for status in statuses)
    for status in statuses:
        print(f"{status.asset.ljust(width)}  {status.status}  {status.path or ''}".rstrip())
    return 0 if all(status.ok for status in statuses) else 1
