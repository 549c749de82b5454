"""Saved files that follow the process umask.

safetensors 0.8 writes every `.safetensors` file owner-only (mode 0600, whatever the umask), while the config, card
and other files of the same folder follow the umask (0644 under the usual 022). A tokenizer or pipeline saved on a
shared disk could then not be loaded by a teammate. [`follow_umask`] gives those files the mode a plain `open()`
would have given them; every hf-vq save calls it after writing.

Ships as remote code with the models, so it imports only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

# What safetensors leaves behind; a file with another mode was set on purpose and is left alone.
_SAFETENSORS_MODE = 0o600


def process_umask() -> int:
    """The process umask, read without changing it where Linux shows it (`/proc/self/status`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)  # elsewhere the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Gives each `.safetensors` file at `path` (a file, or a folder searched recursively) that safetensors left
    owner-only the mode `0o666 & ~umask`, as the folder's other files have.

    Args:
        path (`str` or `os.PathLike`):
            A file or a folder just written.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors")) if path.is_dir() else []
    mode = 0o666 & ~process_umask()
    for file in files:
        try:
            if file.suffix == ".safetensors" and (file.stat().st_mode & 0o777) == _SAFETENSORS_MODE != mode:
                os.chmod(file, mode)
        except OSError:  # another user's file, or gone: not ours to change
            continue


__all__ = ["follow_umask", "process_umask"]
