"""What `VQPreTrainedModel.from_pretrained` adds to transformers' loading: the model card's inputs saved next to the
weights (`card_info.json`), and an error naming the weights file that safetensors cannot read.

Ships as remote code with the models, so it imports only transformers, huggingface_hub and safetensors.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

logger = logging.getLogger(__name__)

CARD_INFO_FILENAME = "card_info.json"  # written next to the weights by hf-vq's card writer (hf_vq.hub.cards)
_HUB_OPTIONS = ("cache_dir", "revision", "token", "local_files_only")


def read_card_info(name: str | os.PathLike | None, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Path] | None:
    """The `card_info.json` saved with a model folder or Hub repository (training recipe, evaluation results), as
    `(info, folder holding it)`; `None` when there is none or it cannot be read, or when `name` is None (a model
    built by `from_pretrained(None, config=..., state_dict=...)`). `model_id` is dropped: it names where the card
    was saved, and a new save names its own folder."""
    path = None if name is None else _card_info_file(name, kwargs)
    if path is None:
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("Ignoring %s, which is not valid JSON (%s).", path, error)
        return None
    if not isinstance(info, dict):
        return None
    info.pop("model_id", None)
    return info, path.parent


def _card_info_file(name: str | os.PathLike, kwargs: dict[str, Any]) -> Path | None:
    subfolder = kwargs.get("subfolder") or ""
    local = Path(name) / subfolder
    if local.is_dir():
        return local / CARD_INFO_FILENAME if (local / CARD_INFO_FILENAME).is_file() else None
    from transformers.utils import cached_file

    options = {key: kwargs[key] for key in _HUB_OPTIONS if key in kwargs}
    try:
        path = cached_file(
            str(name),
            CARD_INFO_FILENAME,
            subfolder=subfolder,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **options,
        )
    except Exception as error:  # the card is optional: a load that succeeded never fails for its sake
        logger.debug("No %s for %s: %s", CARD_INFO_FILENAME, name, error)
        return None
    return Path(path) if path else None


def corrupt_weights_error(name: str | os.PathLike | None, kwargs: dict[str, Any], error: Exception) -> OSError:
    """The error to raise when safetensors could not read the weights of `name`: it names the unreadable files."""
    files = _weight_files(name, kwargs) if name is not None else []
    broken = [path for path in files if not _readable(path)]
    where = ", ".join(str(path) for path in broken) or f"A weights file of {name}"
    return OSError(
        f"{where} is incomplete or corrupt: safetensors cannot read it ({error}). A download, copy or save was "
        "probably cut short. Download it again (`from_pretrained(..., force_download=True)`, or delete it from the "
        "Hugging Face cache) or save the model again with `save_pretrained`."
    )


def _weight_files(name: str | os.PathLike, kwargs: dict[str, Any]) -> list[Path]:
    """The safetensors files a load of `name` reads: those in the folder, or those in the Hub cache."""
    subfolder = kwargs.get("subfolder") or ""
    local = Path(name) / subfolder
    if local.is_dir():
        return sorted(local.glob("*.safetensors"))
    from huggingface_hub import try_to_load_from_cache

    files = []
    for filename in ("model.safetensors", "model.safetensors.index.json"):
        path = try_to_load_from_cache(
            str(name),
            f"{subfolder}/{filename}" if subfolder else filename,
            cache_dir=kwargs.get("cache_dir"),
            revision=kwargs.get("revision"),
        )
        if not isinstance(path, str):
            continue
        if filename.endswith(".json"):  # sharded: the shards the index names, next to it
            shards = set(json.loads(Path(path).read_text(encoding="utf-8")).get("weight_map", {}).values())
            files += [Path(path).parent / shard for shard in sorted(shards)]
        else:
            files.append(Path(path))
    return files


def _readable(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError):
        return False
    return True


__all__ = ["CARD_INFO_FILENAME", "corrupt_weights_error", "read_card_info"]
