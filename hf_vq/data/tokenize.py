"""Encoding an image dataset into a token set (`hf-vq tokenize`), and reading back the images a split was made from.

The token set's format (parquet shards, `tokens_info.json`, resuming) is `tokens.py`'s; this module runs the
tokenizer over the images, one split at a time, in the source's order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import tokens as token_files
from .sources import ImageTransform, load_raw_dataset

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 10_000  # source images per parquet shard (two rows each with flip=True)


def tokenize_dataset(
    tokenizer,
    tokenizer_name: str,
    dataset_name: str,
    output: str | Path,
    *,
    split: str = "train",
    dataset_config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    flip: bool = False,
    image_size: int | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    num_images: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> dict:
    """Encodes one split of an image dataset into a token set (see `hf_vq.data.tokens`); resumes a partial run.

    Args:
        tokenizer (`VQPreTrainedModel`):
            The tokenizer, in eval mode, on the device to encode on.
        tokenizer_name (`str`):
            Its folder or Hub id, recorded in `tokens_info.json` (a folder as its absolute path).
        dataset_name (`str`):
            The images, as `hf-vq train` reads them: a Hub id, an image folder, parquet / tar shards.
        output (`str` or `Path`):
            The token set folder.
        split (`str`, *optional*, defaults to `"train"`):
            The split to encode.
        dataset_config_name, image_column (`str`, *optional*):
            The dataset's configuration and image column (default: detected).
        label_column (`str`, *optional*):
            The class label column (default: `label` when the dataset has one).
        flip (`bool`, *optional*, defaults to `False`):
            Also encode each image's horizontally flipped view (the row after it).
        image_size (`int`, *optional*):
            Resize + center-crop side (default: the tokenizer's `sample_size`).
        batch_size, shard_size (`int`, *optional*):
            Images per forward pass, and source images per parquet shard.
        num_images (`int`, *optional*):
            Only the first N images of the split.
        overwrite (`bool`, *optional*, defaults to `False`):
            Delete tokens made with other settings in `output` first.
        progress (`bool`, *optional*, defaults to `True`):
            A progress bar on stderr.
        report (`Callable[[str], None]`, *optional*):
            Told what a rerun keeps ("Resuming: 2 finished shards of train kept, ..."), e.g. `print` for a command
            line; the line is logged as well.

    Returns:
        `dict`: the token set's info (`tokens_info.json`).
    """
    from tqdm.auto import tqdm

    from ..modeling.tokenizer_identity import tokenizer_config_hash, tokenizer_weights_hashes

    layout = tokenizer.token_layout
    size = image_size or tokenizer.config.sample_size
    multiple = layout.image_multiple
    if size % multiple:
        raise ValueError(
            f"--resolution {size} is not divisible by the tokenizer's downsampling factor {multiple}; use a "
            f"multiple of it, e.g. {size + (-size) % multiple}."
        )
    for name, value in (("batch-size", batch_size), ("shard-size", shard_size), ("num-images", num_images or 1)):
        if value < 1:
            raise ValueError(f"--{name} must be an integer >= 1; got {value}.")
    dataset, column = load_raw_dataset(dataset_name, dataset_config_name, split, image_column)
    features = dataset.features or {}
    if label_column is None and "label" in features:
        label_column = "label"
    if label_column is not None and features and label_column not in features:
        raise ValueError(
            f"--label-column {label_column!r} is not a column of {dataset_name}; columns: {list(features)}."
        )
    names = getattr(features.get(label_column), "names", None) if label_column else None
    local = Path(tokenizer_name).expanduser()
    info = token_files.new_tokens_info(
        tokenizer=str(local.resolve()) if local.is_dir() else tokenizer_name,
        tokenizer_config_hash=tokenizer_config_hash(tokenizer),
        tokenizer_weights_hash=tokenizer_weights_hashes(tokenizer),
        tokenizer_class=type(tokenizer).__name__,
        token_levels=[level.to_dict() for level in layout.levels],
        image_size=[size, size],
        sequence_length=layout.sequence_length(size, size),
        vocabulary_size=layout.vocabulary_size,
        label_names=names,
        num_classes=len(names) if names else 0,
    )
    settings = {
        "dataset": dataset_name,
        "dataset_config": dataset_config_name,
        "image_column": column,
        "label_column": label_column,
        "flip": flip,
        "shard_size": shard_size,
    }
    done = token_files.start_split(output, info, split, settings, overwrite=overwrite)
    shard_features = token_files.tokens_features(
        info["sequence_length"], info["dtype"], names, label_column is not None
    )
    splits = dataset.info.splits or {}
    total = splits[split].num_examples if split in splits and splits[split].num_examples else None
    total = min(total, num_images) if total and num_images else (total or num_images)
    start = done * shard_size
    if done:
        kept = f"Resuming: {done} finished shard{'s' if done > 1 else ''} of {split} kept in {output}"
        if total is not None and start >= total:
            message = f"{kept}: the split is complete (--overwrite starts it afresh)."
        else:
            message = f"{kept}, continuing at image {start} (--overwrite starts afresh)."
        logger.info(message)
        if report is not None:
            report(message)
    if total is not None and start >= total:
        return token_files.finish_split(output, split, **_split_counts(output, split, label_column))
    if start:
        dataset = dataset.skip(start)
    transform = ImageTransform(column, size, train=False, pixel_range=tuple(tokenizer.config.pixel_range))
    rows: dict[str, list] = {"tokens": [], "label": [], "flipped": []}
    batch: dict[str, list] = {"pixels": [], "label": []}
    shard, in_shard = done, 0

    def encode_batch():
        if not batch["pixels"]:
            return
        pixels = torch.stack(batch["pixels"]).to(tokenizer.device)
        views = [(False, pixels)] + ([(True, torch.flip(pixels, dims=[-1]))] if flip else [])
        with torch.no_grad():
            encoded = [(f, layout.flatten(tokenizer.encode_to_indices(p)).cpu().numpy()) for f, p in views]
        for i, label in enumerate(batch["label"]):  # each image's views side by side
            for flipped, ids in encoded:
                rows["tokens"].append(ids[i])
                rows["label"].append(label)
                rows["flipped"].append(flipped)
        batch["pixels"].clear()
        batch["label"].clear()

    def write_shard():
        encode_batch()
        labels = np.asarray(rows["label"], dtype=np.int64) if label_column is not None else None
        tokens = np.stack(rows["tokens"]) if rows["tokens"] else np.zeros((0, info["sequence_length"]), np.int64)
        token_files.write_shard(output, split, shard, shard_features, tokens, np.asarray(rows["flipped"]), labels)
        for values in rows.values():
            values.clear()

    remaining = None if total is None else total - start
    bar = tqdm(total=remaining, desc=f"tokenize {split}", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for index, record in enumerate(dataset, start=start):
            if num_images is not None and index >= num_images:
                break
            out = transform(record, index)  # None: an unreadable record, dropped (counted in the shard's rows)
            if out["pixel_values"] is not None:
                batch["pixels"].append(out["pixel_values"])
                batch["label"].append(int(record[label_column]) if label_column is not None else -1)
            if len(batch["pixels"]) == batch_size:
                encode_batch()
            in_shard += 1
            bar.update(1)
            if in_shard == shard_size:
                write_shard()
                shard, in_shard = shard + 1, 0
        if in_shard:
            write_shard()
    except KeyboardInterrupt as interrupt:  # what Ctrl-C kept, for the one line `hf-vq` prints (cli.py)
        bar.close()
        last = f" (the last: {token_files.shard_path(output, split, shard - 1).name})" if shard else ""
        interrupt.message = (
            f"; kept {shard} finished shard{'' if shard == 1 else 's'} of {split} in {output}{last}. The same "
            "command continues after them:"
        )
        interrupt.continue_flags = {}
        raise
    bar.close()
    return token_files.finish_split(output, split, **_split_counts(output, split, label_column))


def _split_counts(output, split: str, label_column: str | None) -> dict:
    rows = sum(token_files.shard_rows(output, split))
    counts = {"num_rows": rows}
    if label_column is not None and rows:
        import pyarrow.parquet as pq

        files = [token_files.shard_path(output, split, i) for i in token_files.finished_shards(output, split)]
        labels = np.concatenate([pq.read_table(f, columns=["label"]).column("label").to_numpy() for f in files])
        counts["max_label"] = int(labels.max())
    return counts


def real_images(info: dict, split: str, count: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images a token set's split was made from.

    Args:
        info (`dict`):
            The token set's info (`tokens_info.json`, [`tokens.load_tokens_info`]).
        split (`str`):
            One of its splits.
        count (`int`, *optional*):
            How many images; `None` for all.

    Returns:
        `tuple`: the first `count` readable images of the split, in the order [`tokenize_dataset`] encoded them (the
        same stream, the same decoding), as `uint8` `(N, 3, H, W)`, and their labels `(N,)` (`None` for a set
        without labels).
    """
    from .images import decode_image, prepare_image

    settings = info["splits"][split]  # what `tokenize` read: dataset, config, image and label columns
    dataset, column = load_raw_dataset(
        settings["dataset"], settings["dataset_config"], split, settings["image_column"]
    )
    images, labels, label_column = [], [], settings.get("label_column")
    for record in dataset:
        if count is not None and len(images) >= count:
            break
        try:
            image = decode_image(record[column])
        except (OSError, ValueError):  # tokenize skipped it too
            continue
        images.append(prepare_image(image, info["image_size"][0]))
        labels.append(int(record[label_column]) if label_column else 0)
    return torch.stack(images), (torch.tensor(labels) if label_column else None)


__all__ = ["DEFAULT_SHARD_SIZE", "real_images", "tokenize_dataset"]
