"""Everyday subcommands: `hf-vq reconstruct`, `hf-vq encode`, `hf-vq decode`, `hf-vq push`.

Each is `*_main(argv) -> int` over library functions (`hf_vq.hub`, `hf_vq.evaluation.images`), dispatched by
`hf_vq.cli`. What a command produced (file paths, the commit URL) is printed, one line each.

Token files: `hf-vq encode` writes `(N, h, w)` int64 token grids, to `.safetensors` (tensor `"indices"`, with
metadata: the model, the image names, `image_size`, `codebook_size`, `downsampling_factor`) or to `.npy` (the
array alone, rows in the order of the images given). `hf-vq decode` reads either.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _load_model(name: str, device: str | None, trust_remote_code: bool = False):
    from transformers import AutoModel

    from . import modeling  # noqa: F401  (registers hf-vq models with AutoModel)

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return AutoModel.from_pretrained(name, trust_remote_code=trust_remote_code).to(device).eval()


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder or Hub id")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code")


def _batched(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------------------------------------ reconstruct


@torch.no_grad()
def reconstruct_main(argv: list[str] | None = None) -> int:
    from .evaluation.images import load_image, side_by_side
    from .evaluation.metrics import from_uint8, psnr, to_uint8

    parser = argparse.ArgumentParser(
        prog="hf-vq reconstruct",
        description="Encode and decode images; write each input next to its reconstruction as a PNG.",
    )
    _model_arguments(parser)
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument(
        "--output-dir", default="reconstructions", help="where the PNGs go (default: ./reconstructions)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize the shorter side and center-crop to this square size (default: keep the size, "
        "cropped to a multiple of the downsampling factor)",
    )
    args = parser.parse_args(argv)

    model = _load_model(args.model, args.device, args.trust_remote_code)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pixel_range = model.config.pixel_range
    for path in args.images:
        image = load_image(path, args.image_size, model.downsampling_factor)
        pixels = from_uint8(image[None], pixel_range).to(model.device)
        reconstruction = to_uint8(model(pixels).reconstruction, pixel_range).cpu()
        target = output_dir / f"{Path(path).stem}_reconstruction.png"
        side_by_side(image, reconstruction[0]).save(target)
        print(f"{target}\tPSNR {float(psnr(reconstruction, image[None])[0]):.2f} dB")
    return 0


# ------------------------------------------------------------------------------------------------ encode / decode


@torch.no_grad()
def encode_main(argv: list[str] | None = None) -> int:
    from .evaluation.images import load_image
    from .evaluation.metrics import from_uint8

    parser = argparse.ArgumentParser(prog="hf-vq encode", description="Images -> token grids (N, h, w).")
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

    model = _load_model(args.model, args.device, args.trust_remote_code)
    image_size = args.image_size or model.config.sample_size
    grids = []
    for paths in _batched(args.images, args.batch_size):
        images = torch.stack([load_image(p, image_size, model.downsampling_factor) for p in paths])
        grids.append(model.encode_to_indices(from_uint8(images, model.config.pixel_range).to(model.device)).cpu())
    indices = torch.cat(grids).long()
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".npy":
        np.save(output, indices.numpy())
    else:
        from safetensors.torch import save_file

        metadata = {
            "model": args.model,
            "images": json.dumps([Path(p).name for p in args.images]),
            "image_size": str(image_size),
            "codebook_size": str(model.config.num_vq_embeddings),
            "downsampling_factor": str(model.downsampling_factor),
        }
        save_file({"indices": indices.contiguous()}, str(output), metadata=metadata)
    print(f"{output}\t{tuple(indices.shape)} tokens")
    return 0


def read_tokens(path: str | Path) -> tuple[torch.Tensor, list[str] | None]:
    """Token grids `(N, h, w)` from an `hf-vq encode` file, and the image names when the file records them."""
    path = Path(path)
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path)).long(), None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if "indices" not in f.keys():  # noqa: SIM118 - safe_open is not a dict
            raise ValueError(f"{path} has no `indices` tensor; was it written by `hf-vq encode`?")
        indices = f.get_tensor("indices").long()
    names = json.loads(metadata["images"]) if "images" in metadata else None
    return indices, names


@torch.no_grad()
def decode_main(argv: list[str] | None = None) -> int:
    from .evaluation.images import to_pil
    from .evaluation.metrics import to_uint8

    parser = argparse.ArgumentParser(prog="hf-vq decode", description="Token grids (N, h, w) -> PNG images.")
    _model_arguments(parser)
    parser.add_argument("tokens", help="tokens file written by `hf-vq encode` (.safetensors or .npy)")
    parser.add_argument("--output-dir", default="decoded", help="where the PNGs go (default: ./decoded)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    model = _load_model(args.model, args.device, args.trust_remote_code)
    indices, names = read_tokens(args.tokens)
    if indices.dim() == 2:
        indices = indices[None]
    names = [Path(n).stem for n in names] if names else [f"{i:05d}" for i in range(len(indices))]
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(indices), args.batch_size):
        batch = indices[start : start + args.batch_size].to(model.device)
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

    if args.dry_run:
        for name in upload_file_list(args.folder):
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
