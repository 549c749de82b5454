"""`hf-vq encode MODEL IMAGE ... --output FILE`: images -> a token file (`hf_vq.data.tokens.write_tokens`:
`.safetensors`, or `.npy` for a single-level model). Prints the file and the token shapes."""

from __future__ import annotations

from pathlib import Path

from ..parsing import CommandParser
from .common import RESOLUTION_ALIASES, add_model_arguments, batched, check_output_path


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq encode",
        description="Images -> token ids ((N, h, w) grids for a single-grid tokenizer).",
        aliases=RESOLUTION_ALIASES,
    )
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--output", required=True, help="tokens file: .safetensors or .npy")
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="resize the shorter side and center-crop to this size (default: the model's sample_size)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.suffix not in (".safetensors", ".npy"):
        parser.error(f"--output must end in .safetensors or .npy; got {output.name}")
    import torch

    from ..data import check_image_files, from_uint8, load_image
    from ..data.tokens import write_tokens
    from ..loading import default_device, load_model

    check_image_files(args.images)  # every input, before the model loads and before anything is written
    check_output_path(output, "--output")

    model = load_model(args.model, device=default_device(args.device), trust_remote_code=args.trust_remote_code)
    model.eval()
    layout = model.token_layout
    if output.suffix == ".npy" and layout.num_levels > 1:
        parser.error(
            f"--output: a .npy file holds one array and this model has {layout.num_levels} token levels; "
            "use .safetensors"
        )
    image_size = args.resolution or model.config.sample_size
    batches = []  # per batch, one tensor per level
    for paths in batched(args.images, args.batch_size):
        images = torch.stack([load_image(p, image_size, layout.image_multiple) for p in paths])
        with torch.no_grad():
            ids = model.encode_to_indices(from_uint8(images, model.config.pixel_range).to(model.device))
        batches.append([level_ids.cpu() for level_ids in layout.split(ids)])
    levels = [torch.cat(level_ids).long().contiguous() for level_ids in zip(*batches)]
    write_tokens(output, levels, layout, image_size=image_size, model_name=args.model, image_names=args.images)
    shapes = ", ".join(
        f"{level.name} " * (layout.num_levels > 1) + str(tuple(ids.shape)) for level, ids in zip(layout.levels, levels)
    )
    print(f"{output}\t{shapes} tokens")
    return 0
