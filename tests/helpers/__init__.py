"""Shared test helpers (test modules import these, never each other), one module per role:

- `configs`: the tiny configs of every model family (`TINY_VQGAN`, `tiny_vqvae2_config(...)`, the prior's
  `TINY_TRANSFORMER`, ...);
- `images`: real photo batches (`photo_batch`) and image folders or parquet shards with awkward records;
- `training`: the flags of a tiny training run (`tiny_train_flags`);
- `token_sets`: a tiny tokenizer and token set as `hf-vq tokenize` leaves them, and tiny `train-prior` flags;
- `evaluation`: a tiny stand-in for the FID network;
- `ranks`: a 2-process job whose ranks are forked from the test process, and a free local port (`free_port`);
- `model_testers`: the shared ModelTester set, one tester per tokenizer family, that `test_modeling.py` and
  `test_transformers_conventions.py` run their checks over.

Everything is re-exported here, so `from helpers import TINY_VQGAN` and `from helpers.configs import TINY_VQGAN`
name the same object.
"""

from .configs import (
    TINY_DISCRIMINATOR,
    TINY_TOKENIZER,
    TINY_TRANSFORMER,
    TINY_VQGAN,
    TINY_VQVAE,
    TINY_VQVAE2,
    tiny_vqgan_config,
    tiny_vqvae2_config,
    tiny_vqvae_config,
)
from .evaluation import tiny_feature_network
from .images import (
    PHOTOS,
    photo_batch,
    png_16bit_gray,
    write_image_parquet_shards,
    write_mixed_folder,
    write_random_images,
)
from .ranks import free_port
from .token_sets import NAMES, TINY_PRIOR_FLAGS, save_tokenizer, tiny_prior_flags, write_token_set
from .training import tiny_train_flags

__all__ = [
    "NAMES",
    "PHOTOS",
    "TINY_DISCRIMINATOR",
    "TINY_PRIOR_FLAGS",
    "TINY_TOKENIZER",
    "TINY_TRANSFORMER",
    "TINY_VQGAN",
    "TINY_VQVAE",
    "TINY_VQVAE2",
    "free_port",
    "photo_batch",
    "png_16bit_gray",
    "save_tokenizer",
    "tiny_feature_network",
    "tiny_prior_flags",
    "tiny_train_flags",
    "tiny_vqgan_config",
    "tiny_vqvae2_config",
    "tiny_vqvae_config",
    "write_image_parquet_shards",
    "write_mixed_folder",
    "write_random_images",
    "write_token_set",
]
