"""A tiny token set and its tokenizer, as `hf-vq tokenize` would leave them, and the flags of a tiny
`hf-vq train-prior` run: 16 px images, f = 4, so 4x4 = 16 ids of 16 codes per image."""

from __future__ import annotations

import numpy as np
import torch

from hf_vq.data import tokens as token_files
from hf_vq.modeling import VQGANModel, tokenizer_config_hash

from .configs import TINY_TOKENIZER, tiny_vqgan_config

# 16 px images, f = 4: 4x4 = 16 ids of 16 codes per image.
TINY_PRIOR_FLAGS = ["--hidden-size", "32", "--num-hidden-layers", "1", "--num-attention-heads", "4"]
NAMES = ["left", "right"]


def save_tokenizer(folder, seed=0):
    torch.manual_seed(seed)
    model = VQGANModel(tiny_vqgan_config(**TINY_TOKENIZER)).eval()
    model.save_pretrained(folder)
    return VQGANModel.from_pretrained(folder)


def write_token_set(folder, tokenizer, tokenizer_path, splits=None, names=NAMES):
    """A token set as `hf-vq tokenize` writes it, from `{split: (ids (N, 16), labels (N,))}`. By default two classes
    with structure a prior can learn: class c's ids are a noisy ramp starting at 4c (64 train and 16 test rows)."""
    if splits is None:
        rng, splits = np.random.default_rng(0), {}
        for split, n in (("train", 64), ("test", 16)):
            labels = np.arange(n) % 2
            ids = (4 * labels[:, None] + np.arange(16)[None] // 2 + rng.integers(0, 2, (n, 16))) % 16
            splits[split] = (ids, labels)
    meta = token_files.new_tokens_info(
        tokenizer=str(tokenizer_path),
        tokenizer_config_hash=tokenizer_config_hash(tokenizer),
        tokenizer_class="VQGANModel",
        token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16, "depth": 1}],
        image_size=[16, 16],
        sequence_length=16,
        vocabulary_size=16,
        label_names=list(names),
        num_classes=len(names),
    )
    features = token_files.tokens_features(16, "uint16", list(names), has_labels=True)
    for split, (ids, labels) in splits.items():
        n = len(ids)
        token_files.start_split(folder, meta, split, dict(dataset="synthetic", flip=False, shard_size=n))
        token_files.write_shard(folder, split, 0, features, ids, np.zeros(n, bool), labels)
        token_files.finish_split(folder, split, num_rows=n, max_label=int(labels.max()))


def tiny_prior_flags(tokens, output, *extra):
    """`hf-vq train-prior` flags: a one-layer prior trained 6 steps on `tokens` into `output`, then `extra`."""
    return [
        "--tokens",
        str(tokens),
        "--output-dir",
        str(output),
        "--max-train-steps",
        "6",
        "--train-batch-size",
        "8",
        "--checkpointing-steps",
        "3",
        "--image-logging-steps",
        "3",
        "--eval-steps",
        "3",
        "--logging-steps",
        "1",
        "--num-samples-per-class",
        "2",
        "--lr-scheduler",
        "constant_with_warmup",
        *TINY_PRIOR_FLAGS,
        *extra,
    ]
