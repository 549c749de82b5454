"""Where a name points, decided up front: a local path, or a Hub repository. A missing path that can only be local
is reported in seconds and never sent to the Hub; a Hub name is looked up once, without the minute of retries
`datasets` spends before saying it cannot reach the Hub. Used for `--dataset-name`, `--init-from` and the commands'
model and dataset arguments.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FILE_SUFFIXES = (".parquet", ".tar", ".json", ".safetensors", ".npy", ".pt", ".bin", *IMAGE_SUFFIXES)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_like_local_path(name: str) -> bool:
    """Whether `name` can only mean a local path: it starts like one (`/`, `./`, `../`, `~`), has a backslash or
    more than one `/`, ends in a file suffix, or is not a valid Hub repo id. Otherwise (`my_photos`, `org/name`) it
    may be a local path or a Hub id."""
    if name.startswith(("/", "./", "../", "~", ".\\")) or name in (".", "..") or "\\" in name:
        return True
    return not _HUB_ID.match(name) or Path(name).suffix.lower() in FILE_SUFFIXES


def hub_is_offline() -> bool:
    from huggingface_hub import constants

    datasets_offline = os.environ.get("HF_DATASETS_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE) or datasets_offline


def missing_source_message(name: str, flag: str, kind: str) -> str:
    """`{flag} {name!r}: ...`: why `name` is neither an existing local path nor (as far as we can tell without
    retrying for a minute) a Hub repository of `kind` (`"dataset"`, `"model"`): what was tried, and the fix."""
    where = f"there is no file or folder {str(Path(name).expanduser().resolve())!r}"
    if looks_like_local_path(name):
        return f"{flag} {name!r}: {where} (it can only be a local path, so the Hub was not tried). Check the path."
    if hub_is_offline():
        return (
            f"{flag} {name!r}: {where}, and no Hub {kind} {name!r} is in the offline cache (HF_HUB_OFFLINE is set). "
            f"Give the path of a local {kind}, or download it once with the Hub reachable."
        )
    return f"{flag} {name!r}: {where}, and the Hub has no {kind} {name!r} that you can access. Check the name."


def check_dataset_source(name: str, flag: str = "--dataset-name") -> str:
    """Decides up front whether `name` is local (`"local"`: a folder, a file or a glob) or a Hub dataset (`"hub"`),
    and fails in seconds, saying which was tried: a missing path that can only be local is never looked up on the
    Hub, and a Hub name is looked up once, without `datasets`' minute of retries."""
    path = Path(name).expanduser()
    if path.exists() or any(c in name for c in "*?["):
        return "local"
    if looks_like_local_path(name):
        raise FileNotFoundError(missing_source_message(name, flag, "dataset"))
    if hub_is_offline():  # `datasets` reads the cache or fails at once
        return "hub"
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().dataset_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise FileNotFoundError(missing_source_message(name, flag, "dataset")) from None
    except Exception as error:
        raise ConnectionError(
            f"{flag} {name!r}: there is no local file or folder of that name, and the Hub could not be reached to "
            f"look for a dataset called so ({type(error).__name__}). Give the path of a local folder, or check the "
            "connection (with HF_HUB_OFFLINE=1 a dataset already in the cache is used)."
        ) from None
    return "hub"


def check_parquet_files(files: list[str], flag: str = "--dataset-name") -> None:
    """Reads the footer of each local parquet shard (a few KB each) so that a truncated or corrupt shard is named
    before training starts, instead of failing mid-run as `Could not open Parquet input source '<Buffer>'`."""
    import pyarrow.parquet as pq

    for file in files:
        try:
            pq.read_metadata(file)
        except Exception as error:
            raise ValueError(
                f"{flag}: the parquet shard {file} is truncated or corrupt ({str(error).strip().splitlines()[0]}). "
                "Re-create or re-download it, or move it out of the dataset."
            ) from None


__all__ = [
    "FILE_SUFFIXES",
    "IMAGE_SUFFIXES",
    "check_dataset_source",
    "check_parquet_files",
    "hub_is_offline",
    "looks_like_local_path",
    "missing_source_message",
]
