"""Token sets on disk (`hf_vq.data.tokens`): the parquet shards and `tokens_info.json` that `hf-vq tokenize` writes
and `hf-vq train-prior` reads; atomic shards, resume bookkeeping, and loading with plain `datasets`."""

import json

import numpy as np
import pytest

from hf_vq.data import tokens as token_files

NAMES = ["cat", "dog", "bird"]


def info(vocabulary_size=16, **overrides):
    fields = dict(
        tokenizer="/models/tok",
        tokenizer_config_hash="abc123",
        tokenizer_class="VQGANModel",
        token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": vocabulary_size, "depth": 1}],
        image_size=[8, 8],
        sequence_length=4,
        vocabulary_size=vocabulary_size,
        label_names=NAMES,
        num_classes=3,
    )
    return token_files.new_tokens_info(**{**fields, **overrides})


SETTINGS = dict(
    dataset="photos/", dataset_config=None, image_column="image", label_column="label", flip=True, shard_size=2
)


def write_split(folder, split="train", shards=2, rows=4, vocabulary_size=16):
    meta = info(vocabulary_size)
    token_files.start_split(folder, meta, split, SETTINGS)
    features = token_files.tokens_features(4, meta["dtype"], NAMES, has_labels=True)
    rng = np.random.default_rng(0)
    written = []
    for index in range(shards):
        ids = rng.integers(0, vocabulary_size, (rows, 4))
        labels, flipped = np.arange(rows) % 3, np.arange(rows) % 2 == 1
        token_files.write_shard(folder, split, index, features, ids, flipped, labels)
        written.append((ids, labels, flipped))
    token_files.finish_split(folder, split, num_rows=rows * shards, max_label=2)
    return written


def test_dtype_is_the_smallest_that_holds_every_id():
    assert token_files.token_dtype(1024) == "uint16" and token_files.token_dtype(65536) == "uint16"
    assert token_files.token_dtype(65537) == "int32"


def test_round_trip_keeps_ids_labels_views_and_class_names(tmp_path):
    import datasets

    written = write_split(tmp_path)
    dataset = token_files.load_tokens(tmp_path, "train")
    assert dataset.features["label"].names == NAMES
    assert dataset.features["tokens"] == datasets.List(datasets.Value("uint16"), length=4)
    ids, labels = token_files.token_arrays(dataset)
    np.testing.assert_array_equal(ids, np.concatenate([w[0] for w in written]))
    np.testing.assert_array_equal(labels, np.concatenate([w[1] for w in written]))
    originals, _ = token_files.token_arrays(dataset, unflipped_only=True)
    np.testing.assert_array_equal(originals, np.concatenate([w[0][~w[2]] for w in written]))

    # Plain `datasets`, without hf-vq: the folder and the shards load with the same features.
    same = datasets.load_dataset(str(tmp_path), split="train")
    assert same.features == dataset.features and same["tokens"] == dataset["tokens"]
    meta = token_files.load_tokens_info(tmp_path)
    assert meta["splits"]["train"] == {
        **SETTINGS,
        "num_rows": 8,
        "max_label": 2,
        "num_shards": 2,
        "complete": True,
    }


def test_int32_ids_for_a_large_joint_vocabulary(tmp_path):
    write_split(tmp_path, vocabulary_size=70_000)
    dataset = token_files.load_tokens(tmp_path)
    assert dataset.features["tokens"].feature.dtype == "int32"
    assert token_files.token_arrays(dataset)[0].max() > 65_535


def test_resume_bookkeeping(tmp_path):
    meta = info()
    assert token_files.start_split(tmp_path, meta, "train", SETTINGS) == 0
    features = token_files.tokens_features(4, "uint16", NAMES, has_labels=True)
    token_files.write_shard(tmp_path, "train", 0, features, np.zeros((2, 4)), np.zeros(2, bool), np.zeros(2))
    # A run killed while writing shard 1 leaves a .tmp file: not a finished shard.
    (tmp_path / "data" / "train-00001.parquet.tmp").write_bytes(b"half")
    assert token_files.finished_shards(tmp_path, "train") == [0]
    assert token_files.start_split(tmp_path, meta, "train", SETTINGS) == 1
    with pytest.raises(ValueError, match="not tokenized to the end. Rerun the same"):
        token_files.load_tokens(tmp_path, "train")

    # Other settings, or another tokenizer, would mix incompatible tokens: refused unless overwriting.
    with pytest.raises(ValueError, match=r"other settings \(\{'flip': True\}; this run: \{'flip': False\}\)"):
        token_files.start_split(tmp_path, meta, "train", {**SETTINGS, "flip": False})
    with pytest.raises(ValueError, match="tokenizer_config_hash"):
        token_files.start_split(tmp_path, info(tokenizer_config_hash="other"), "test", SETTINGS)
    assert token_files.start_split(tmp_path, meta, "train", {**SETTINGS, "flip": False}, overwrite=True) == 0
    assert not list((tmp_path / "data").iterdir())
    assert json.loads((tmp_path / "tokens_info.json").read_text())["splits"]["train"]["flip"] is False


def test_clear_errors_for_what_is_not_there(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a token set. Make one with `hf-vq tokenize"):
        token_files.load_tokens(tmp_path)
    write_split(tmp_path)
    with pytest.raises(ValueError, match=r"no tokenized split 'test' \(it has \['train'\]\)"):
        token_files.load_tokens(tmp_path, "test")
    features = token_files.tokens_features(4, "uint16", NAMES, has_labels=True)
    with pytest.raises(ValueError, match=r"shape \(rows, 4\); got \(2, 5\)"):
        token_files.write_shard(tmp_path, "train", 5, features, np.zeros((2, 5)), np.zeros(2, bool), np.zeros(2))
    with pytest.raises(ValueError, match="one label per row"):
        token_files.write_shard(tmp_path, "train", 5, features, np.zeros((2, 4)), np.zeros(2, bool))
