"""Shared test helpers (test modules import these, never each other): the tiny models most tests build, a tiny
stand-in for the FID network, and image folders with every awkward kind of record.

The tiny VQ-GAN: two levels (f=2) with attention at the lower one, 16 codes of 4 dims, 32 px. Small enough to run
anything on a CPU in a fraction of a second, with every block type the full-size model has.
"""

import io
import struct
import zlib

import numpy as np
import torch
from PIL import Image

from hf_vq import VQGANConfig

TINY_VQGAN = dict(
    block_out_channels=[8, 16],
    down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],  # what the config derives from the down blocks
    layers_per_block=1,
    latent_channels=4,
    num_vq_embeddings=16,
    norm_num_groups=4,
    sample_size=32,
)


def tiny_vqgan_config(**overrides) -> VQGANConfig:
    """`TINY_VQGAN` with `overrides`; the up blocks are left to the config to derive, so overriding the levels or
    the down blocks alone gives a consistent model."""
    fields = {name: value for name, value in TINY_VQGAN.items() if name != "up_block_types"}
    return VQGANConfig(**{**fields, **overrides})


TINY_DISCRIMINATOR = {"base_channels": 8, "num_layers": 2, "norm_num_groups": 4}


def tiny_feature_network(folder) -> str:
    """A TorchScript stand-in for the FID Inception ((B, 3, 299, 299) in [-1, 1] -> (B, 16) features), saved as
    `folder/features.pt`; returns its path, for `fid_network=` / `--fid-network`. Tests of the evaluation path then
    run the protocol's code without seconds per image in Inception-v3 or seconds on a 2048-d FID."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 16))
    path = folder / "features.pt"
    torch.jit.script(network).save(str(path))
    return str(path)


def png_16bit_gray(array: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG written by hand, so the file really holds 16-bit samples."""
    height, width = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write_mixed_folder(folder, size=40):
    """5 readable images of every awkward kind and 2 unreadable records, in a flat image folder."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (size, size, 4), dtype=np.uint8), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").convert("P").save(folder / "palette.png")
    (folder / "gray16.png").write_bytes(png_16bit_gray(np.full((size, size), 40000, dtype=np.uint16)))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    (folder / "notes.png").write_bytes(b"this is text, not an image")
    return 5, 2


def write_image_parquet_shards(folder, num_images: int, step: int, num_shards: int = 2) -> list:
    """`num_images` flat 24x24 RGB images (grey level `step * i`) as `num_shards` parquet shards in `folder/data/`
    (`train-{i}.parquet`, an image column of `datasets.Image` type). Returns the shard paths."""
    import datasets

    pictures = [Image.fromarray(np.full((24, 24, 3), step * i, dtype=np.uint8)) for i in range(num_images)]
    table = datasets.Dataset.from_dict({"image": pictures}).cast_column("image", datasets.Image())
    (folder / "data").mkdir(parents=True, exist_ok=True)
    paths = [folder / "data" / f"train-{i}.parquet" for i in range(num_shards)]
    for i, path in enumerate(paths):
        table.shard(num_shards, i, contiguous=True).to_parquet(str(path))
    return paths
