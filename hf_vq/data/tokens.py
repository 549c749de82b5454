"""Token datasets: the ids of a tokenizer over an image dataset, as parquet shards a prior trains on.

`hf-vq tokenize` writes, and `hf-vq train-prior` reads, a folder (or a Hub dataset repository with the same files):

    tokens_info.json                  what the ids mean: tokenizer (path / Hub id, config hash, weights digests,
                                      class), token levels,
                                      image size, sequence length, dtype, class names, source dataset, and per split
                                      the settings and counts (see [`new_tokens_info`])
    data/{split}-{index:05d}.parquet  one shard per `shard_size` source images, in the source's order; columns
                                      `tokens` (fixed-size list of `sequence_length` ids: `uint16` when the joint
                                      vocabulary fits, else `int32`), `label` (`ClassLabel` with the class names;
                                      absent for unlabelled data), `flipped` (the horizontally flipped view)

The ids are the tokenizer's `token_layout.flatten` sequence (levels coarse to fine, raster order, residual stages of a
position together, per-(level, stage) offsets into the joint vocabulary), so a prior reads them as they are. The
`datasets` features are stored in each shard's schema, so `load_dataset("parquet", data_files=...)` (or
`load_dataset(folder)`, which finds the `data/{split}-*` files) gives the same columns with the class names; so does
[`load_tokens`].

Writing is resumable and atomic per shard: a shard is written to `*.parquet.tmp` and renamed when complete, so an
existing shard file is a finished one; a rerun skips the source images of finished shards and rewrites the one that
was being written. This module only reads and writes: the encoding (model code) is the command's.

It also holds the smaller format of `hf-vq encode` / `hf-vq decode`, one file of token ids for a list of images
([`write_tokens`], [`read_tokens`]): int64 ids shaped as the model's `token_layout` says (`(N, h, w)`, or
`(N, h, w, Q)` for residual VQ), in a `.safetensors` file (tensor `"indices"`, or `"indices.<level>"` per level for a
model with several levels, with metadata: the model, the image names, `image_size`, `codebook_size`,
`downsampling_factor`, `token_layout`) or a `.npy` file (the array alone, rows in the order of the images given;
single-level models only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TOKENS_INFO_NAME = "tokens_info.json"
DATA_FOLDER = "data"
FORMAT_NAME = "hf-vq-tokens"
FORMAT_VERSION = 1
# Settings of a split that must match for a rerun to continue it (counts and `complete` may change).
RESUME_KEYS = ("flip", "shard_size", "label_column", "image_column", "dataset", "dataset_config")
INDICES_KEY = "indices"  # `hf-vq encode`'s tensor of a single-level model; "indices.<level name>" for each of several
INFO_KEYS = ("tokenizer_config_hash", "token_levels", "image_size", "sequence_length", "vocabulary_size", "dtype")


def token_dtype(vocabulary_size: int) -> str:
    """`"uint16"` when every id of a joint vocabulary of `vocabulary_size` fits (`<= 65536`), else `"int32"`."""
    return "uint16" if vocabulary_size <= 2**16 else "int32"


def tokens_features(sequence_length: int, dtype: str, label_names: list[str] | None, has_labels: bool):
    """The `datasets.Features` of a shard: `tokens`, `label` (when `has_labels`; a `ClassLabel` when named) and
    `flipped`."""
    import datasets

    features = {"tokens": datasets.List(datasets.Value(dtype), length=sequence_length)}
    if has_labels:
        features["label"] = datasets.ClassLabel(names=list(label_names)) if label_names else datasets.Value("int64")
    features["flipped"] = datasets.Value("bool")
    return datasets.Features(features)


def new_tokens_info(
    *,
    tokenizer: str,
    tokenizer_config_hash: str,
    tokenizer_weights_hash: dict[str, str] | None = None,
    tokenizer_class: str,
    token_levels: list[dict],
    image_size: list[int],
    sequence_length: int,
    vocabulary_size: int,
    label_names: list[str] | None,
    num_classes: int,
) -> dict[str, Any]:
    """The top of `tokens_info.json`: what the ids mean. `splits` is filled in by [`start_split`] / [`finish_split`].

    `num_classes` is 0 for unlabelled data; `label_names` is None when the labels have no names (plain integers).
    `tokenizer_weights_hash` is `hf_vq.modeling.tokenizer_identity.tokenizer_weights_hashes(tokenizer)`: with the
    config hash, what `hf-vq train-prior` checks its tokenizer against (token sets made before it was recorded have
    only the config hash, and only that is checked).
    """
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tokenizer": tokenizer,
        "tokenizer_config_hash": tokenizer_config_hash,
        "tokenizer_weights_hash": tokenizer_weights_hash,
        "tokenizer_class": tokenizer_class,
        "token_levels": token_levels,
        "image_size": list(image_size),
        "sequence_length": int(sequence_length),
        "vocabulary_size": int(vocabulary_size),
        "dtype": token_dtype(vocabulary_size),
        "num_classes": int(num_classes),
        "label_names": list(label_names) if label_names else None,
        "splits": {},
    }


# ------------------------------------------------------------------------------------------------ files


def shard_path(folder: str | os.PathLike, split: str, index: int) -> Path:
    return Path(folder) / DATA_FOLDER / f"{split}-{index:05d}.parquet"


def finished_shards(folder: str | os.PathLike, split: str) -> list[int]:
    """Indices of the complete shards of `split` (a `.tmp` file is an interrupted write, not a shard)."""
    data = Path(folder) / DATA_FOLDER
    found = []
    for path in data.glob(f"{split}-*.parquet") if data.is_dir() else []:
        suffix = path.stem[len(split) + 1 :]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def _write_json_atomically(path: Path, value: dict) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)


def write_shard(
    folder: str | os.PathLike,
    split: str,
    index: int,
    features,
    tokens: np.ndarray,
    flipped: np.ndarray,
    labels: np.ndarray | None = None,
) -> Path:
    """Writes one shard atomically: `tokens` `(n, sequence_length)`, `flipped` `(n,)`, `labels` `(n,)` when the
    features have a `label` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features.arrow_schema
    length = features["tokens"].length
    tokens = np.ascontiguousarray(tokens, dtype=features["tokens"].feature.dtype)
    if tokens.ndim != 2 or tokens.shape[1] != length:
        raise ValueError(f"A shard's tokens must have shape (rows, {length}); got {tokens.shape}.")
    columns = {"tokens": pa.FixedSizeListArray.from_arrays(pa.array(tokens.reshape(-1)), length)}
    if "label" in features:
        if labels is None or len(labels) != len(tokens):
            raise ValueError("This token set has labels: pass one label per row.")
        columns["label"] = pa.array(np.asarray(labels, dtype=np.int64))
    columns["flipped"] = pa.array(np.asarray(flipped, dtype=bool))
    table = pa.Table.from_pydict(columns, schema=schema)
    path = shard_path(folder, split, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    pq.write_table(table, partial)
    os.replace(partial, path)
    return path


def start_split(folder: str | os.PathLike, info: dict, split: str, settings: dict, overwrite: bool = False) -> int:
    """Records `split` in `folder/tokens_info.json` (created, or checked against what is there) and returns how many
    shards of it are already finished: a rerun continues after them.

    Raises `ValueError` when the folder holds tokens of another tokenizer or image size, or this split was started
    with other settings (`flip`, `shard_size`, ...): mixing them would corrupt the set. `overwrite` deletes the
    split's shards (and, if the tokenizer differs, every split) first.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKENS_INFO_NAME
    existing = json.loads(path.read_text()) if path.is_file() else None
    if existing is not None:
        differs = [k for k in INFO_KEYS if existing.get(k) != info.get(k)]
        weights = existing.get("tokenizer_weights_hash"), info.get("tokenizer_weights_hash")
        if not differs and all(weights) and weights[0] != weights[1]:
            if not overwrite:
                raise ValueError(
                    f"{folder} already holds tokens of the tokenizer {existing.get('tokenizer')}, which has the "
                    f"config of this run's tokenizer ({info.get('tokenizer')}) but other encoder or codebook weights: "
                    "its ids mean other codes, and mixing them would corrupt the set. Write to another --output "
                    "folder, or pass --overwrite to delete them."
                )
            differs = ["tokenizer_weights_hash"]
        old = existing.get("splits", {}).get(split)
        changed = [k for k in RESUME_KEYS if old is not None and old.get(k) != settings.get(k)]
        if (differs or changed) and not overwrite:
            what = differs or changed
            theirs = {k: existing.get(k) if differs else old.get(k) for k in what}
            ours = {k: info.get(k) if differs else settings.get(k) for k in what}
            raise ValueError(
                f"{folder} already holds tokens made with other settings ({theirs}; this run: {ours}). Write to "
                "another --output folder, or pass --overwrite to delete them."
            )
        if differs:  # --overwrite with another tokenizer: nothing there is valid any more
            existing = None
            for shard in (folder / DATA_FOLDER).glob("*.parquet*"):
                shard.unlink()
    if overwrite:
        for shard in (folder / DATA_FOLDER).glob(f"{split}-*.parquet*"):
            shard.unlink()
    merged = dict(info) if existing is None else existing
    merged.setdefault("splits", {})
    previous = merged["splits"].get(split, {})
    merged["splits"][split] = {**settings, **{k: previous[k] for k in ("num_images", "num_rows") if k in previous}}
    merged["splits"][split]["complete"] = False
    _write_json_atomically(path, merged)
    shards = finished_shards(folder, split)
    if shards != list(range(len(shards))):
        raise ValueError(f"{folder}: the finished shards of {split!r} are not contiguous ({shards}); use --overwrite.")
    return len(shards)


def finish_split(folder: str | os.PathLike, split: str, **counts: int) -> dict:
    """Marks `split` complete in `tokens_info.json` with its counts (`num_images`, `num_rows`, ...); returns the
    info."""
    path = Path(folder) / TOKENS_INFO_NAME
    info = json.loads(path.read_text())
    entry = info["splits"][split]
    entry.update(counts, num_shards=len(finished_shards(folder, split)), complete=True)
    if info.get("label_names") is None and "max_label" in counts:  # integer labels: classes are 0..max seen
        info["num_classes"] = max(info.get("num_classes", 0), counts["max_label"] + 1)
    _write_json_atomically(path, info)
    return info


def shard_rows(folder: str | os.PathLike, split: str) -> list[int]:
    """Rows of each finished shard of `split`, read from the parquet footers (no data is read)."""
    import pyarrow.parquet as pq

    return [pq.ParquetFile(shard_path(folder, split, i)).metadata.num_rows for i in finished_shards(folder, split)]


# ------------------------------------------------------------------------------------------------ reading


def _is_local(path: str | os.PathLike) -> bool:
    return Path(path).expanduser().is_dir()


def load_tokens_info(path: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """`tokens_info.json` of a token folder or of a Hub dataset repository."""
    if _is_local(path):
        file = Path(path).expanduser() / TOKENS_INFO_NAME
        if not file.is_file():
            raise FileNotFoundError(
                f"{path} holds no {TOKENS_INFO_NAME}: it is not a token set. Make one with `hf-vq tokenize "
                f"TOKENIZER --dataset-name ... --output {path}`."
            )
    else:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(str(path), TOKENS_INFO_NAME, repo_type="dataset", revision=revision)
    info = json.loads(Path(file).read_text())
    if info.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}/{TOKENS_INFO_NAME} is not an hf-vq token set (format {info.get('format')!r}).")
    return info


def load_tokens(path: str | os.PathLike, split: str = "train", revision: str | None = None):
    """One split of a token set (folder or Hub dataset id) as a `datasets.Dataset` with columns `tokens`, `label`
    (if labelled) and `flipped`. Raises `ValueError` for a split that was not tokenized, or not to the end."""
    import datasets

    info = load_tokens_info(path, revision)
    splits = info.get("splits", {})
    if split not in splits:
        raise ValueError(
            f"{path} has no tokenized split {split!r} (it has {sorted(splits)}). Run `hf-vq tokenize ... --split "
            f"{split} --output {path}`."
        )
    if not splits[split].get("complete"):
        raise ValueError(
            f"The {split!r} split of {path} was not tokenized to the end. Rerun the same `hf-vq tokenize` command: "
            "it continues where it stopped."
        )
    if _is_local(path):  # in memory, features from the shards' schema: no copy in the datasets cache
        import pyarrow as pa

        from .token_checks import id_bounds, read_shard

        folder = Path(path).expanduser()
        bounds = id_bounds(info)
        tables = []
        for i in finished_shards(folder, split):
            tables.append(read_shard(folder, info, split, shard_path(folder, split, i), bounds, tables[:1]))
        return datasets.Dataset(pa.concat_tables(tables), split=datasets.NamedSplit(split))
    pattern = f"{DATA_FOLDER}/{split}-*.parquet"
    return datasets.load_dataset(str(path), data_files={split: pattern}, split=split, revision=revision)


def token_arrays(dataset, unflipped_only: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """A token split in memory: ids `int64` `(N, sequence_length)` and labels `int64` `(N,)` (None if unlabelled).
    `unflipped_only` keeps the original views (held-out measurements count each image once)."""
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    if unflipped_only:
        table = table.filter(pc.invert(table.column("flipped")))
    tokens = table.column("tokens").combine_chunks()
    length = tokens.type.list_size
    ids = tokens.values.to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, length)
    labels = table.column("label").to_numpy().astype(np.int64) if "label" in table.column_names else None
    return ids, labels


# ------------------------------------------------------------------------------------------------ token files


def token_file_names(layout) -> list[str]:
    """The tensor names of a token file written for `layout` (a `TokenLayout`), one per level."""
    if layout.num_levels == 1:
        return [INDICES_KEY]
    return [f"{INDICES_KEY}.{level.name}" for level in layout.levels]


def write_tokens(
    path: str | Path,
    levels: Sequence[Any],
    layout,
    *,
    image_size: int,
    model_name: str | None = None,
    image_names: Sequence[str] | None = None,
) -> None:
    """Writes the token ids of a list of images as `hf-vq encode` does (see the module docstring).

    Args:
        path (`str` or `Path`):
            A `.safetensors` or `.npy` file (its folder is created).
        levels (sequence of `torch.LongTensor`):
            One tensor per level of `layout`, coarse to fine, each `(N, h, w)` or `(N, h, w, Q)`.
        layout (`TokenLayout`):
            The model's `token_layout`.
        image_size (`int`):
            The square size the images were encoded at.
        model_name (`str`, *optional*):
            The model's folder or Hub id, recorded in the metadata.
        image_names (sequence of `str`, *optional*):
            The images' file names, in the order of the rows; `hf-vq decode` names its PNGs after them.
    """
    path = Path(path)
    if path.suffix not in (".safetensors", ".npy"):
        raise ValueError(f"A token file ends in .safetensors or .npy; got {path.name}. Rename it.")
    if path.suffix == ".npy" and layout.num_levels > 1:
        raise ValueError(
            f"{path.name}: a .npy file holds one array and this model has {layout.num_levels} token levels; "
            "use .safetensors"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, levels[0].numpy())
        return
    from safetensors.torch import save_file

    from ..modeling.saving_utils import follow_umask

    metadata = {
        "model": model_name or "",
        "image_size": str(image_size),
        "codebook_size": ",".join(str(level.codebook_size) for level in layout.levels),
        # A summary for tools that read no JSON; a level of fixed side or length has no factor ("-").
        "downsampling_factor": ",".join(str(level.downsampling_factor or "-") for level in layout.levels),
        "token_layout": json.dumps([level.to_dict() for level in layout.levels]),
    }
    if image_names is not None:
        metadata["images"] = json.dumps([Path(name).name for name in image_names])
    tensors = {name: ids.long().contiguous() for name, ids in zip(token_file_names(layout), levels)}
    save_file(tensors, str(path), metadata=metadata)
    follow_umask(path)


def read_tokens(path: str | Path) -> tuple[Any, list[str] | None]:
    """Token ids from an `hf-vq encode` file, and the image names when the file records them.

    Returns:
        `tuple`: the ids, one `torch.LongTensor` (`(N, h, w)`, or `(N, h, w, Q)` for residual VQ) or a tuple with one
        tensor per level (coarse to fine) for a file written from a model with several levels; and the image names
        (`None` for a `.npy` file).
    """
    import torch

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


__all__ = [
    "DATA_FOLDER",
    "INDICES_KEY",
    "TOKENS_INFO_NAME",
    "finish_split",
    "finished_shards",
    "load_tokens",
    "load_tokens_info",
    "new_tokens_info",
    "read_tokens",
    "shard_path",
    "shard_rows",
    "start_split",
    "token_arrays",
    "token_dtype",
    "token_file_names",
    "tokens_features",
    "write_shard",
    "write_tokens",
]
