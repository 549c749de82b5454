"""`hf-vq reconstruct MODEL IMAGE ...`: each image encoded and decoded, written next to its reconstruction as a PNG,
whole (`--full-resolution`, tile by tile) or at one square size. Prints each PNG's path and PSNR."""

from __future__ import annotations

from pathlib import Path

from ..parsing import CommandParser
from .common import RESOLUTION_ALIASES, add_model_arguments, check_output_path


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq reconstruct",
        description="Encode and decode images; write each input next to its reconstruction as a PNG.",
        aliases=RESOLUTION_ALIASES,
    )
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument(
        "--output-dir", default="reconstructions", help="where the PNGs go (default: ./reconstructions)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="resize the shorter side and center-crop to this square size (default: the model's sample_size, "
        "as hf-vq encode does)",
    )
    size.add_argument(
        "--full-resolution",
        action="store_true",
        help="keep each image's size (cropped to a multiple of the downsampling factor), encoded and decoded tile "
        "by tile (model.tiled_encode / tiled_decode) so memory stays that of one tile; a bar on stderr counts tiles",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    from ..data import check_image_files, from_uint8, load_image, side_by_side, to_uint8
    from ..evaluation import psnr
    from ..evaluation.memory import check_forward_fits
    from ..loading import default_device, load_model

    output_dir = Path(args.output_dir)
    check_image_files(args.images)  # every input, before the model loads and before anything is written
    check_output_path(output_dir, "--output-dir")

    device = default_device(args.device)
    model = load_model(args.model, device=device, trust_remote_code=args.trust_remote_code).eval()
    if args.full_resolution and not hasattr(model, "tiled_encode"):  # VQ-VAE-2: two grids, no tiled path
        parser.error(f"--full-resolution tiles the model, which {type(model).__name__} cannot do; give --resolution")
    image_size = None if args.full_resolution else args.resolution or model.config.sample_size
    output_dir.mkdir(parents=True, exist_ok=True)
    pixel_range = model.config.pixel_range
    fix = (
        "give a smaller --resolution"
        if args.full_resolution
        else "give --full-resolution (tiled) or a smaller --resolution"
    )
    for path in args.images:
        image = load_image(path, image_size, model.token_layout.image_multiple)
        height, width = image.shape[-2:]
        check_forward_fits(model, height, width, tiled=args.full_resolution, name=str(path), fix=fix)
        pixels = from_uint8(image[None], pixel_range).to(model.device)
        with torch.no_grad():
            if args.full_resolution:
                decoded = reconstruct_tiled(model, pixels, Path(path).name)
            else:
                decoded = model(pixels).reconstruction
        reconstruction = to_uint8(decoded, pixel_range).cpu()
        target = output_dir / f"{Path(path).stem}_reconstruction.png"
        side_by_side(image, reconstruction[0]).save(target)
        print(f"{target}\tPSNR {float(psnr(reconstruction, image[None])[0]):.2f} dB")
    return 0


def reconstruct_tiled(model, pixels, name: str):
    """`model(pixels).reconstruction` computed tile by tile (`tiled_encode`, then `tiled_decode` of its codes, with
    `enable_tiling()`'s defaults), with one progress bar on stderr over both passes' tiles: a photo of thousands of
    pixels a side takes minutes on a CPU. `model(pixels)` itself never tiles."""
    from tqdm.auto import tqdm

    height, width = pixels.shape[-2:]
    total = 2 * model.tile_count(height, width)  # the decode pass runs the encode pass's grid, in tokens
    with tqdm(total=total, desc=f"{name} ({width}x{height})", unit="tile", dynamic_ncols=True) as bar:
        codes = model.tiled_encode(pixels, progress=lambda done, of: bar.update()).quantized
        return model.tiled_decode(codes, progress=lambda done, of: bar.update())
