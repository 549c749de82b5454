"""Where images come from: training (and held-out) images as a `datasets` stream from a Hub dataset id, a local
folder, parquet or webdataset shards, or the built-in photos.

Pipeline (one example at a time, in the data loader's workers)::

    load_dataset(..., streaming=True)      image column cast to undecoded bytes/path
      -> shuffle(seed, buffer)             a seeded buffer; the shard order is shuffled too, per epoch
      -> ImageTransform                    decode -> RGB -> resize + crop (random crop + flip for training,
                                           center crop for eval) -> float tensor in the model's pixel range
      -> DataLoader(collate_images)        {"pixel_values": (b, 3, H, W), "num_skipped": records dropped}

Corrupt or non-image records (truncated files, text named `.png`, ...) become `pixel_values=None` in the
transform and are dropped by `collate_images`, which counts them in the batch itself, so the count is exact
and reaches the training loop from any worker process. The price: a batch that held bad records is smaller
than `--train-batch-size` (b <= B), and a batch of nothing but bad records is empty (the loop skips it).

Unreadable shards: a local parquet shard that cannot be opened at all (truncated, not parquet) is named before
training starts (`check_parquet_files` reads every footer); a shard that fails to read mid-run stops the run with a
message naming the data source (`hf_vq.training.stopping.read_batches`) rather than being skipped, because skipping a
whole shard would silently change the data and break exact resume. Local or Hub is decided up front
(`check_dataset_source`): a missing path is reported in seconds, never retried against the Hub.

Splitting across processes: `accelerator.prepare(dataloader)` gives each rank its own shards (it calls
`datasets.IterableDataset.shard`, the shard assignment `split_dataset_by_node` makes, when the dataset has at
least one shard per rank, and otherwise takes each rank's slice of every global batch), so every example is
seen by exactly one rank. `split_dataset_by_node` is deliberately *not* applied on top: combined with
`accelerator.prepare` it splits twice and, with 2 ranks and 4 shards, 8 of 16 examples are never seen.
Within a rank, `datasets` spreads the shards over the loader workers (`--dataloader-num-workers`, capped by
the shard count: a local image folder streams as one shard, parquet/webdataset folders as one per file).

Data position: the stream is deterministic given the seed and the epoch: shuffling is seeded, and the random
crop/flip of an example is drawn from an RNG keyed by `(seed, index in the worker's stream, image content)`,
not from a global RNG. So the training loop saves `(epoch, batches consumed in that epoch)` in each checkpoint
and resumes by `set_epoch(epoch)` + `accelerator.skip_first_batches`, which replays the stream to the same
position (the shuffle buffer's contents are not in `IterableDataset.state_dict()`, so restoring that state
would not be exact). Replaying costs reading the skipped batches again, not training on them.

Built-in photos (`hf-vq train` with no `--dataset-name`): the RGB photographs that ship inside the
scikit-image 0.26.0, scikit-learn and matplotlib wheels, so the main job runs offline on a fresh machine.
The split is by photo, so evaluation images are never trained on:

- train (9 photos): skimage `astronaut.png`, `coffee.png`, `hubble_deep_field.jpg`, `ihc.png`,
  `motorcycle_left.png`, `motorcycle_right.png`, `retina.jpg`; sklearn `china.jpg`; matplotlib
  `grace_hopper.jpg`. Streamed forever as random square crops (side between `resolution` and the whole photo,
  after scaling the photo's shorter side to 256 px), so each step sees new views at several zooms.
- eval (3 photos): skimage `chelsea.png` (a cat), `rocket.jpg`; sklearn `flower.jpg`. Five fixed crops of each:
  the whole photo (center square), then its four corner quarters; ordered so the first three are the whole
  photos.

Grayscale, synthetic or RGBA images in those packages (camera, coins, logo, ...) are not used.
"""

from __future__ import annotations

import glob
import logging
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .fashion_mnist import FASHION_MNIST, load_fashion_mnist
from .images import center_crop, decode_image, resize_shorter_side, to_rgb, to_tensor
from .locations import IMAGE_SUFFIXES, check_dataset_source, check_parquet_files, missing_source_message

logger = logging.getLogger(__name__)

# (package, path inside the installed package). Pinned to scikit-image 0.26.0 (see pyproject's `training` extra).
BUILTIN_TRAIN_PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"),
    ("skimage", "data/retina.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
BUILTIN_EVAL_PHOTOS = (
    ("skimage", "data/chelsea.png"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("skimage", "data/rocket.jpg"),
)
# `--dataset builtin` of `hf-vq evaluate`; training takes no dataset name for them.
BUILTIN_DATASET = "builtin"
# How runs on the built-in photos name their data in logs and model cards.
BUILTIN_DESCRIPTION = "built-in photos (scikit-image, scikit-learn, matplotlib)"
BUILTIN_PHOTO_SHORT_SIDE = 256  # photos are scaled once so their shorter side has this many pixels
BUILTIN_NUM_SHARDS = 64  # one independent crop stream per shard: enough for 64 ranks x workers
IMAGE_COLUMN_NAMES = ("image", "img", "images", "jpg", "jpeg", "png", "webp", "pixel_values")


# ----------------------------------------------------------------------------------------------------------------
# Built-in photos


def builtin_photo_paths(split: str) -> list[Path]:
    """Files of the built-in `"train"` or `"eval"` photos, checked to exist in the installed wheels."""
    photos = BUILTIN_TRAIN_PHOTOS if split == "train" else BUILTIN_EVAL_PHOTOS
    paths = []
    for package, relative in photos:
        try:
            path = Path(str(resources.files(package).joinpath(relative)))
        except ModuleNotFoundError:
            path = None
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"The built-in photo {package}/{relative} is missing. Install the training extra "
                "(`pip install 'hf-vq[training]'`, which pins scikit-image==0.26.0) or pass --dataset-name."
            )
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------------------------
# Transform and collation


class ImageTransform:
    """Decodes and crops one example; a `datasets` map function called with `with_indices=True`.

    Returns `{"pixel_values": (3, r, r) float32}`, or `{"pixel_values": None}` for a record that is not a readable
    image (logged here, dropped and counted by `collate_images`).
    """

    def __init__(
        self,
        image_column: str,
        resolution: int,
        train: bool,
        pixel_range: tuple[float, float] = (-1.0, 1.0),
        random_flip: bool = True,
        seed: int = 0,
    ):
        self.image_column = image_column
        self.resolution = resolution
        self.train = train
        self.pixel_range = tuple(pixel_range)
        self.random_flip = random_flip
        self.seed = seed

    def crop(self, image: Image.Image, index: int) -> Image.Image:
        image = resize_shorter_side(image, self.resolution)
        r = self.resolution
        if not self.train:
            return center_crop(image, r)
        # Keyed, not global, randomness: the same stream position gives the same crop after a resume.
        rng = np.random.default_rng([self.seed, index, zlib.crc32(image.tobytes())])
        left = int(rng.integers(0, image.width - r + 1))
        top = int(rng.integers(0, image.height - r + 1))
        image = image.crop((left, top, left + r, top + r))
        if self.random_flip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def __call__(self, example: dict[str, Any], index: int) -> dict[str, Any]:
        try:
            image = decode_image(example[self.image_column])
        except Exception as error:
            where = example[self.image_column].get("path") if isinstance(example[self.image_column], dict) else None
            logger.warning("Skipping a record that is not a readable image (%s): %s", where or f"#{index}", error)
            return {"pixel_values": None}
        return {"pixel_values": to_tensor(self.crop(image, index), self.pixel_range)}


def collate_images(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stacks the decoded images `(b, 3, r, r)` and counts the records that were not (`num_skipped`)."""
    good = [e["pixel_values"] for e in examples if e["pixel_values"] is not None]
    return {
        "pixel_values": torch.stack(good) if good else torch.zeros(0, 3, 0, 0),
        "num_skipped": torch.tensor(len(examples) - len(good)),
    }


# ----------------------------------------------------------------------------------------------------------------
# Sources


def _open_photo(path: Path) -> Image.Image:
    return resize_shorter_side(to_rgb(Image.open(path)), BUILTIN_PHOTO_SHORT_SIDE)


def _builtin_train_crops(shard_seeds: list[int], resolution: int):
    """Endless random square crops of the built-in training photos; one independent stream per shard seed."""
    photos = [_open_photo(path) for path in builtin_photo_paths("train")]
    for shard_seed in shard_seeds:  # each shard is endless: a worker only ever reads its first one
        rng = np.random.default_rng(shard_seed)
        while True:
            photo = photos[int(rng.integers(len(photos)))]
            side = int(rng.integers(min(resolution, min(photo.size)), min(photo.size) + 1))
            left = int(rng.integers(0, photo.width - side + 1))
            top = int(rng.integers(0, photo.height - side + 1))
            yield {"image": np.asarray(photo.crop((left, top, left + side, top + side)))}


def builtin_eval_crops() -> list[Image.Image]:
    """The fixed eval views of the built-in eval photos: whole photos first, then their corner quarters."""
    photos = [_open_photo(path) for path in builtin_photo_paths("eval")]
    views = []
    for corner in (None, (0, 0), (1, 0), (0, 1), (1, 1)):
        for photo in photos:
            side = min(photo.size)
            left, top = (photo.width - side) // 2, (photo.height - side) // 2
            if corner is not None:
                half = side // 2
                left, top, side = left + corner[0] * half, top + corner[1] * half, half
            views.append(photo.crop((left, top, left + side, top + side)))
    return views


def _load_source(name: str, config_name: str | None, split: str):
    """`load_dataset(..., streaming=True)` for a Hub id, a local folder, or a glob / file of parquet or tar shards."""
    import datasets

    if name == FASHION_MNIST and not Path(name).exists():  # the Debian package's files, read by fashion_mnist.py
        return load_fashion_mnist(split, streaming=True)
    path = Path(name).expanduser()
    kind = check_dataset_source(name)
    if path.is_dir():
        check_parquet_files(sorted(str(p) for p in path.rglob("*.parquet")))
        return datasets.load_dataset(str(path), config_name, split=split, streaming=True)
    if kind == "local":
        files = sorted(glob.glob(str(path)))
        if not files:
            raise FileNotFoundError(f"--dataset-name {name!r}: no file matches.")
        suffixes = {Path(f).suffix.lower() for f in files}
        if suffixes <= {".parquet"}:
            builder = "parquet"
            check_parquet_files(files)
        elif suffixes <= {".tar"}:
            builder = "webdataset"
        elif suffixes <= set(IMAGE_SUFFIXES):
            builder = "imagefolder"
        else:
            raise ValueError(
                f"--dataset-name {name!r}: expected .parquet, .tar or image files, found {sorted(suffixes)}."
            )
        return datasets.load_dataset(builder, data_files={split: files}, split=split, streaming=True)
    try:
        return datasets.load_dataset(name, config_name, split=split, streaming=True)
    except ConnectionError:  # offline, and not in the cache
        raise FileNotFoundError(missing_source_message(name, "--dataset-name", "dataset")) from None


def find_image_column(dataset, requested: str | None) -> str:
    """The requested column, else the first column of `datasets.Image` type, else a column with an image-like name."""
    import datasets

    features = dataset.features or {}
    columns = list(features) if features else list(dataset.column_names or [])
    if requested is not None:
        if columns and requested not in columns:
            raise ValueError(f"--image-column {requested!r} is not a column of the dataset; columns: {columns}.")
        return requested
    for column, feature in features.items():
        if isinstance(feature, datasets.Image):
            return column
    for column in columns:
        if column.lower() in IMAGE_COLUMN_NAMES:
            return column
    raise ValueError(f"Found no image column among {columns}; name it with --image-column.")


def load_raw_dataset(name: str, config_name: str | None, split: str, image_column: str | None):
    """The undecoded stream of one split and its image column (images left as bytes/paths for `decode_image`)."""
    import datasets

    dataset = _load_source(name, config_name, split)
    column = find_image_column(dataset, image_column)
    if dataset.features is not None and isinstance(dataset.features.get(column), datasets.Image):
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset, column


def default_eval_split(name: str, config_name: str | None, flag: str = "--dataset-name") -> str | None:
    """`validation` or `test` when the dataset has one (looked up without reading any data). A dataset that does
    not exist is an error (`FileNotFoundError`), not a dataset without those splits."""
    import datasets

    if name == FASHION_MNIST and not Path(name).exists():
        return "test"
    path = Path(name).expanduser()
    check_dataset_source(name, flag)
    if path.is_file() or any(c in name for c in "*?["):
        return None
    try:
        splits = datasets.load_dataset(str(path) if path.is_dir() else name, config_name, streaming=True).keys()
    except Exception as error:
        logger.info("Could not list the splits of %s (%s); no evaluation split.", name, error)
        return None
    return next((s for s in ("validation", "valid", "val", "test") if s in splits), None)


# ----------------------------------------------------------------------------------------------------------------
# What the training loop calls


@dataclass
class TrainStream:
    dataset: Any  # datasets.IterableDataset yielding {"pixel_values": (3, r, r) tensor or None}
    n_shards: int
    num_examples: int | None  # size of the split when the dataset reports it (for --num-train-epochs)
    description: str  # for the model card and the log


def build_train_stream(
    dataset_name: str | None,
    *,
    resolution: int,
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
    dataset_config_name: str | None = None,
    split: str = "train",
    image_column: str | None = None,
    random_flip: bool = True,
    shuffle_buffer_size: int = 1000,
) -> TrainStream:
    """The shuffled, decoded, cropped training stream (built-in photos when `dataset_name` is None)."""
    import datasets

    if dataset_name is None:
        shard_seeds = [seed * BUILTIN_NUM_SHARDS + i for i in range(BUILTIN_NUM_SHARDS)]
        raw = datasets.IterableDataset.from_generator(
            _builtin_train_crops, gen_kwargs={"shard_seeds": shard_seeds, "resolution": resolution}
        )
        column, num_examples, description = "image", None, BUILTIN_DESCRIPTION
    else:
        raw, column = load_raw_dataset(dataset_name, dataset_config_name, split, image_column)
        splits = raw.info.splits or {}
        num_examples = splits[split].num_examples if split in splits and splits[split].num_examples else None
        description = f"{dataset_name} ({split})"
    if shuffle_buffer_size > 0:
        raw = raw.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    transform = ImageTransform(column, resolution, True, pixel_range, random_flip, seed)
    columns = list(raw.features) if raw.features else ["image"]
    stream = raw.map(transform, with_indices=True, remove_columns=columns)
    return TrainStream(stream, raw.n_shards, num_examples, description)


def build_train_dataloader(
    stream: TrainStream, batch_size: int, num_workers: int, num_processes: int = 1
) -> torch.utils.data.DataLoader:
    """A plain `DataLoader` over the stream, to be passed through `accelerator.prepare`."""
    shards_per_process = max(1, stream.n_shards // num_processes)
    workers = min(num_workers, shards_per_process)  # more workers than shards would sit idle
    return torch.utils.data.DataLoader(
        stream.dataset,
        batch_size=batch_size,
        collate_fn=collate_images,
        num_workers=workers,
        drop_last=True,
        persistent_workers=False,  # new workers each epoch: they pick up the dataset's new epoch
        generator=torch.Generator().manual_seed(0),  # not the global RNG: a resumed run makes its iterator elsewhere
    )


def load_eval_images(
    dataset_name: str | None,
    *,
    num_images: int,
    resolution: int,
    pixel_range: tuple[float, float] = (-1.0, 1.0),
    dataset_config_name: str | None = None,
    split: str | None = None,
    image_column: str | None = None,
) -> tuple[torch.Tensor | None, int]:
    """The first `num_images` held-out images, center-cropped: `((N, 3, r, r) or None, records skipped)`.

    Held in memory: evaluation and the sample grid reuse the same images at every step.
    """
    transform = ImageTransform("image", resolution, False, pixel_range)
    if dataset_name is None:
        records = ({"image": view} for view in builtin_eval_crops())
    else:
        split = split or default_eval_split(dataset_name, dataset_config_name)
        if split is None:
            logger.warning("%s has no validation/test split: evaluation is off (give --eval-split).", dataset_name)
            return None, 0
        raw, column = load_raw_dataset(dataset_name, dataset_config_name, split, image_column)
        transform.image_column = column
        records = iter(raw)
    images, skipped = [], 0
    try:
        for index, record in enumerate(records):
            out = transform(record, index)
            if out["pixel_values"] is None:
                skipped += 1
                continue
            images.append(out["pixel_values"])
            if len(images) == num_images:
                break
    except (OSError, ValueError) as error:  # a shard that cannot be read (records that cannot are skipped above)
        detail = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        raise ValueError(
            f"Reading held-out images from {dataset_name} ({split}) failed: {detail} The `datasets` error logged "
            "above names the file; repair or remove it."
        ) from None
    return (torch.stack(images) if images else None), skipped


__all__ = [
    "BUILTIN_DATASET",
    "BUILTIN_DESCRIPTION",
    "BUILTIN_EVAL_PHOTOS",
    "BUILTIN_TRAIN_PHOTOS",
    "IMAGE_COLUMN_NAMES",
    "IMAGE_SUFFIXES",
    "ImageTransform",
    "TrainStream",
    "build_train_dataloader",
    "build_train_stream",
    "builtin_eval_crops",
    "builtin_photo_paths",
    "collate_images",
    "default_eval_split",
    "find_image_column",
    "load_eval_images",
    "load_raw_dataset",
]
