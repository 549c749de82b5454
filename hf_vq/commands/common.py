"""What several `hf-vq` subcommands share: the model arguments, the dataset flags' one vocabulary, the check that an
output path can be written before any work starts."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# `hf-vq train`'s names are the canonical ones (they are also its YAML keys and training_args.json fields); the
# spellings the other commands used before keep working (see `hf_vq.parsing.add_aliases`).
DATASET_ALIASES = {"--dataset": "--dataset-name", "--dataset-config": "--dataset-config-name"}
RESOLUTION_ALIASES = {"--image-size": "--resolution"}


def add_model_arguments(parser: argparse.ArgumentParser, help: str = "model folder or Hub id") -> None:
    """The positional `model`, `--device` and `--trust-remote-code`."""
    parser.add_argument("model", help=help)
    add_device_arguments(parser)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code")


def add_dataset_arguments(parser: argparse.ArgumentParser, help: str, **kwargs) -> None:
    """`--dataset-name` (with `kwargs`: its default, or `required=True`) and `--dataset-config-name`."""
    parser.add_argument("--dataset-name", help=help, **kwargs)
    parser.add_argument("--dataset-config-name", default=None, help="dataset configuration name")


def check_output_path(path: Path, flag: str) -> None:
    """Fails before any work if `path` (a file or folder to write) cannot be created: a parent is a regular file, or
    the nearest existing folder is not writable.

    Args:
        path (`Path`):
            The file or folder the command will write.
        flag (`str`):
            The flag that gave it (`"--output-dir"`): messages name it, and a flag ending in `dir` must be a folder.
    """
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise NotADirectoryError(f"{flag} {str(path)!r}: {existing} is a file, not a folder. Pick another {flag}.")
    if existing == path and path.exists() and flag.endswith("dir") and not path.is_dir():
        raise NotADirectoryError(f"{flag} {str(path)!r} is a file, not a folder. Pick another {flag}.")
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise PermissionError(f"{flag} {str(path)!r}: you may not write in {folder}. Pick another {flag}.")


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "DATASET_ALIASES",
    "RESOLUTION_ALIASES",
    "add_dataset_arguments",
    "add_device_arguments",
    "add_model_arguments",
    "batched",
    "check_output_path",
]
