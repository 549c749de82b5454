"""`hf-vq decode MODEL TOKENS`: a token file written by `hf-vq encode` -> PNG images, named after the images the
file records. Prints each PNG's path."""

from __future__ import annotations

from pathlib import Path

from ..parsing import CommandParser
from .common import add_model_arguments, check_output_path


def build_parser() -> CommandParser:
    parser = CommandParser(prog="hf-vq decode", description="Token ids (from hf-vq encode) -> PNG images.")
    add_model_arguments(parser)
    parser.add_argument("tokens", help="tokens file written by `hf-vq encode` (.safetensors or .npy)")
    parser.add_argument("--output-dir", default="decoded", help="where the PNGs go (default: ./decoded)")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.tokens).is_file():
        raise FileNotFoundError(f"tokens {args.tokens!r}: no such file. Give a file written by `hf-vq encode`.")
    check_output_path(Path(args.output_dir), "--output-dir")
    import torch

    from ..data import to_pil, to_uint8
    from ..data.tokens import read_tokens
    from ..loading import default_device, load_model

    model = load_model(args.model, device=default_device(args.device), trust_remote_code=args.trust_remote_code)
    model.eval()
    layout = model.token_layout
    indices, names = read_tokens(args.tokens)
    levels = list(layout.split(indices))
    for i, (level, ids) in enumerate(zip(layout.levels, levels)):
        if ids.dim() == level.rank:  # one image's ids ((h, w), (h, w, depth) or (length,)), no batch dimension
            levels[i] = ids[None]
    count = len(levels[0])
    names = [Path(n).stem for n in names] if names else [f"{i:05d}" for i in range(count)]
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, args.batch_size):
        batch = layout.join([ids[start : start + args.batch_size].to(model.device) for ids in levels])
        with torch.no_grad():
            images = to_uint8(model.decode_indices(batch), model.config.pixel_range).cpu()
        for name, image in zip(names[start : start + args.batch_size], images):
            target = output_dir / f"{name}.png"
            to_pil(image).save(target)
            print(target)
    return 0
