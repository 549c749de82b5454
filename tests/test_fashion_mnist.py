"""Fashion-MNIST as a library data source: the idx reader (checked magic numbers, clear errors) on hand-written files,
and the real release from the Debian package `dataset-fashion-mnist` (skipped where it is not installed)."""

import gzip
import struct

import numpy as np
import pytest

from hf_vq.data import fashion_mnist
from hf_vq.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist, load_fashion_mnist_arrays, read_idx

needs_package = pytest.mark.skipif(
    not fashion_mnist.is_available(),
    reason="needs the Debian package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`)",
)


def write_idx(path, array: np.ndarray, magic: int | None = None, truncate: int = 0):
    magic = magic if magic is not None else 0x0800 + array.ndim
    data = struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data[: len(data) - truncate]))


def fake_root(folder, n_train=12, n_test=4):
    """A folder with the four files of the release, holding the first images of a synthetic set."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name, _ = fashion_mnist.SPLITS[split]
        write_idx(folder / images_name, rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / labels_name, np.arange(n) % 10)
    return folder


def test_read_idx_round_trip_and_clear_errors(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    write_idx(tmp_path / "ok.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz", 3), images)

    write_idx(tmp_path / "labels.gz", np.arange(3))
    with pytest.raises(ValueError, match=r"magic number 0x00000801, expected 0x00000803.*dataset-fashion-mnist"):
        read_idx(tmp_path / "labels.gz", 3)  # a labels file where images were expected
    write_idx(tmp_path / "short.gz", images, truncate=10)
    with pytest.raises(ValueError, match=r"announces \[3, 28, 28\] = 2352 bytes, the file holds 2342"):
        read_idx(tmp_path / "short.gz", 3)


def test_missing_files_name_the_package_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist_arrays("train", root=tmp_path)
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\]; got split 'validation'"):
        load_fashion_mnist_arrays("validation", root=tmp_path)


def test_dataset_and_stream_from_a_folder_named_by_the_environment(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_VQ_FASHION_MNIST_DIR", str(fake_root(tmp_path)))
    images, labels = load_fashion_mnist_arrays("train")
    dataset = load_fashion_mnist("train", num_examples=5)
    assert dataset.features["label"].names == list(CLASS_NAMES) and isinstance(
        dataset.features["image"], datasets.Image
    )
    assert len(dataset) == 5 and dataset.split == "train"
    np.testing.assert_array_equal(np.asarray(dataset[3]["image"]), images[3])
    assert dataset[3]["image"].mode == "L" and dataset["label"] == labels[:5].tolist()

    stream = load_fashion_mnist("train", streaming=True)
    assert stream.n_shards == fashion_mnist.NUM_STREAM_SHARDS and stream.info.splits["train"].num_examples == 12
    streamed = list(stream)
    assert [r["label"] for r in streamed] == labels.tolist()  # every image once, in file order
    np.testing.assert_array_equal(np.asarray(streamed[11]["image"]), images[11])


@needs_package
def test_the_real_release():
    images, labels = load_fashion_mnist_arrays("test")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10  # balanced: 1000 test images per class
    assert images.mean() > 60 and images[:, 0, 0].max() < 30  # dark backgrounds, bright garments
    # The first test image of the release is an ankle boot (label 9), the second a pullover (2).
    assert labels[:2].tolist() == [9, 2] and CLASS_NAMES[9] == "Ankle boot"
    stream = load_fashion_mnist("train", streaming=True)
    assert stream.info.splits["train"].num_examples == 60_000
