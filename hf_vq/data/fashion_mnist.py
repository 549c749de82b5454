"""Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747) as a `datasets` source, read offline from the Debian package.

`apt-get install dataset-fashion-mnist` puts the four idx files of the original release in
`/usr/share/datasets/fashion-mnist/`: 60,000 training and 10,000 test images, 28x28 gray, 10 classes. This module
reads them (gzip + NumPy, magic numbers and sizes checked) and exposes each split as a `datasets.Dataset` (or, for
the training stream, an `IterableDataset` in shards) with an `image` column (`datasets.Image`, mode `L`) and a
`label` column (`ClassLabel` with the 10 class names, as on the Hub's `zalando-datasets/fashion_mnist`).

The trainers take it as `--dataset-name fashion_mnist` ([`FASHION_MNIST`]); images are converted to RGB and
resized like any other source's.
"""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path

import numpy as np

FASHION_MNIST = "fashion_mnist"  # the `--dataset-name` that selects this source
FASHION_MNIST_DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ROOT_ENVIRONMENT_VARIABLE = "HF_VQ_FASHION_MNIST_DIR"  # another folder holding the four .gz files
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
IMAGE_SIDE = 28
NUM_STREAM_SHARDS = 8  # shards of the streaming split: data-loader workers and ranks read disjoint ones

# idx magic numbers: 0x00 0x00, data type 0x08 (unsigned byte), number of dimensions.
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}


def fashion_mnist_root(root: str | os.PathLike | None = None) -> Path:
    """The folder of the idx files: `root`, else `$HF_VQ_FASHION_MNIST_DIR`, else the Debian package's."""
    return Path(root or os.environ.get(ROOT_ENVIRONMENT_VARIABLE) or DEFAULT_ROOT)


def is_available(root: str | os.PathLike | None = None) -> bool:
    """Whether all four idx files are present."""
    folder = fashion_mnist_root(root)
    return all((folder / name).is_file() for images, labels, _ in SPLITS.values() for name in (images, labels))


def read_idx(path: str | os.PathLike, num_dimensions: int) -> np.ndarray:
    """One gzipped idx file of unsigned bytes -> `uint8` array `(N,)` (labels) or `(N, rows, cols)` (images).

    Raises `ValueError` when the magic number is not that of a `num_dimensions`-D unsigned-byte file or the
    payload is not as long as the header says (a truncated or wrong file).
    """
    with gzip.open(path, "rb") as file:
        data = file.read()
    header_size = 4 * (1 + num_dimensions)
    magic = int(np.frombuffer(data[:4], dtype=">u4")[0]) if len(data) >= 4 else None
    if magic == _IDX_MAGIC[num_dimensions] and len(data) < header_size:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an idx header; the file is truncated.")
    if magic != _IDX_MAGIC[num_dimensions]:
        raise ValueError(
            f"{path}: idx magic number {magic if magic is None else format(magic, '#010x')}, expected "
            f"{_IDX_MAGIC[num_dimensions]:#010x} (unsigned bytes, "
            f"{num_dimensions}-D). Is it the right file? Reinstall the package {FASHION_MNIST_DEBIAN_PACKAGE}."
        )
    shape = np.frombuffer(data[4:header_size], dtype=">u4").tolist()
    expected = int(np.prod(shape))
    if len(data) - header_size != expected:
        raise ValueError(
            f"{path}: the header announces {shape} = {expected} bytes, the file holds {len(data) - header_size}. "
            f"The file is damaged: reinstall the package {FASHION_MNIST_DEBIAN_PACKAGE}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def load_fashion_mnist_arrays(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A split as arrays: images `uint8` `(N, 28, 28)` (0 = black background) and labels `uint8` `(N,)`."""
    if split not in SPLITS:
        raise ValueError(f"Fashion-MNIST has the splits {list(SPLITS)}; got split {split!r}.")
    folder = fashion_mnist_root(root)
    images_name, labels_name, count = SPLITS[split]
    missing = [name for name in (images_name, labels_name) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} are not in {folder}. Install them with `apt-get install "
            f"{FASHION_MNIST_DEBIAN_PACKAGE}` (Debian/Ubuntu), or put the four idx .gz files of "
            f"github.com/zalandoresearch/fashion-mnist in a folder named by ${ROOT_ENVIRONMENT_VARIABLE}."
        )
    images = read_idx(folder / images_name, 3)
    labels = read_idx(folder / labels_name, 1)
    # The release has `count` images; a folder named by the environment variable may hold a subset of the same.
    n = len(labels)
    if images.shape != (n, IMAGE_SIDE, IMAGE_SIDE) or not 0 < n <= count or labels.max() >= len(CLASS_NAMES):
        raise ValueError(
            f"Fashion-MNIST {split}: expected up to {count} images of {IMAGE_SIDE}x{IMAGE_SIDE}, as many labels, in "
            f"[0, {len(CLASS_NAMES)}); got images {images.shape}, labels {labels.shape} (max {labels.max()})."
        )
    return images, labels


def fashion_mnist_features():
    import datasets

    return datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))})


def _generate_examples(shards: list[tuple[str, int, int]], root: str | None):
    from PIL import Image

    arrays = {}
    for split, start, stop in shards:
        if split not in arrays:
            arrays[split] = load_fashion_mnist_arrays(split, root)
        images, labels = arrays[split]
        for i in range(start, stop):
            yield {"image": Image.fromarray(images[i], mode="L"), "label": int(labels[i])}


def load_fashion_mnist(
    split: str = "train",
    *,
    streaming: bool = False,
    num_examples: int | None = None,
    root: str | os.PathLike | None = None,
):
    """A Fashion-MNIST split as a `datasets.Dataset` (or, with `streaming`, an `IterableDataset` in
    [`NUM_STREAM_SHARDS`] shards, in file order) with columns `image` (`datasets.Image`) and `label` (`ClassLabel`).

    Args:
        split (`str`, *optional*, defaults to `"train"`):
            `"train"` (60,000 images) or `"test"` (10,000).
        streaming (`bool`, *optional*, defaults to `False`):
            Return a lazily decoded `IterableDataset` (what the trainer's `load_dataset(..., streaming=True)` gives).
        num_examples (`int`, *optional*):
            Only the first `num_examples` images of the split (for quick runs and tests).
        root (`str` or `os.PathLike`, *optional*):
            Folder of the idx files (default: `$HF_VQ_FASHION_MNIST_DIR`, else the Debian package's).
    """
    import datasets

    images, labels = load_fashion_mnist_arrays(split, root)  # checked before anything is built
    total = len(labels) if num_examples is None else min(int(num_examples), len(labels))
    if total < 1:
        raise ValueError(f"`num_examples` must be >= 1; got {num_examples}.")
    features = fashion_mnist_features()
    if not streaming:
        from PIL import Image

        data = {"image": [Image.fromarray(a, mode="L") for a in images[:total]], "label": labels[:total].tolist()}
        dataset = datasets.Dataset.from_dict(data, features=features, split=datasets.NamedSplit(split))
        return dataset
    bounds = np.linspace(0, total, min(NUM_STREAM_SHARDS, total) + 1).astype(int)
    shards = [(split, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    folder = str(fashion_mnist_root(root))
    dataset = datasets.IterableDataset.from_generator(
        _generate_examples,
        features=features,
        gen_kwargs={"shards": shards, "root": folder},
        split=datasets.NamedSplit(split),
    )
    dataset.info.splits = datasets.SplitDict({split: datasets.SplitInfo(name=split, num_examples=total)})
    return dataset


__all__ = [
    "CLASS_NAMES",
    "FASHION_MNIST",
    "FASHION_MNIST_DEBIAN_PACKAGE",
    "fashion_mnist_features",
    "fashion_mnist_root",
    "is_available",
    "load_fashion_mnist",
    "load_fashion_mnist_arrays",
    "read_idx",
]
