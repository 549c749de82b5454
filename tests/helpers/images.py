"""Images for tests: real photo batches (scikit-image's photos, so tiny models see real image statistics) and
image folders or parquet shards with every awkward kind of record."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import torch
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo_batch(
    size: int = 32,
    channels: int = 3,
    batch: int = 2,
    *,
    height: int | None = None,
    width: int | None = None,
    crop: int | None = None,
) -> torch.Tensor:
    """The first `batch` of scikit-image's astronaut, coffee, chelsea and rocket photos, area-resized to
    `size` x `size` (or `height` x `width`), in [-1, 1]: `(batch, channels, H, W)`, the channel mean for
    `channels=1`. `crop` first keeps each photo's top-left `crop` x `crop` square."""
    from skimage import data as skdata

    images = []
    for name in PHOTOS[:batch]:
        photo = getattr(skdata, name)()
        if crop is not None:
            photo = photo[:crop, :crop]
        tensor = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float() / 127.5 - 1
        resized = torch.nn.functional.interpolate(tensor[None], size=(height or size, width or size), mode="area")
        images.append(resized[0])
    pixel_values = torch.stack(images)
    if channels == 1:
        pixel_values = pixel_values.mean(dim=1, keepdim=True)
    return pixel_values


def write_random_images(folder, count: int = 4, size: int = 40, prefix: str = "") -> list:
    """`count` random-noise RGB PNGs of `size` x `size` in `folder` (`{prefix}{i}.png`): a training set that
    loads in milliseconds (the built-in photos take seconds). Returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{prefix}{i}.png" for i in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return paths


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
    palette = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").convert("P")
    palette.save(folder / "palette.png")
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
