"""The final save, made as safe against a kill as the checkpoints: the output folder holds the old model or the
new one, never half of one.

The output folder cannot be swapped whole (it also holds the checkpoints and the open TensorBoard logs), so the
task saves into a staging folder inside it, `.final-save.tmp/`. Once everything is written, one rename to
`.final-save.ready/` is the commit point; then each entry is moved into place with `os.replace` (a folder such as
`discriminator/` by two renames), the weights first and `config.json` (`model_index.json`) last, so it is never newer
than the weights it describes. A run killed before the commit leaves `.tmp` (removed at the next start: the old model
stands); killed after it, `.ready`, whose moves the next run in that folder finishes (`commit_staged_save`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

STAGING_NAME = ".final-save.tmp"
READY_NAME = ".final-save.ready"
# transformers (diffusers) finds a model (pipeline) by its config: it arrives only after the weights it describes.
LAST_MOVED = ("config.json", "model_index.json")


def begin_staged_save(output_dir: Path) -> Path:
    """An empty staging folder inside `output_dir` for the final save."""
    staging = output_dir / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def abort_staged_save(output_dir: Path) -> None:
    shutil.rmtree(output_dir / STAGING_NAME, ignore_errors=True)


def _move_in(ready: Path, output_dir: Path) -> None:
    for entry in sorted(ready.iterdir(), key=lambda p: (p.name in LAST_MOVED, p.name)):
        target = output_dir / entry.name
        if entry.is_dir():
            old = output_dir / f".{entry.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)
    ready.rmdir()


def finish_staged_save(output_dir: Path) -> None:
    """Commits the staging folder (one rename), then moves its entries into `output_dir`."""
    ready = output_dir / READY_NAME
    shutil.rmtree(ready, ignore_errors=True)
    os.replace(output_dir / STAGING_NAME, ready)
    _move_in(ready, output_dir)


def commit_staged_save(output_dir: Path) -> bool:
    """Finishes a final save that was committed but not yet moved in when its run was killed. True if there was one."""
    ready = output_dir / READY_NAME
    if not ready.is_dir():
        return False
    _move_in(ready, output_dir)
    return True


def remove_leftovers(output_dir: Path, checkpoint_name: re.Pattern, marker: str) -> list[Path]:
    """Removes what killed runs leave: an uncommitted staging folder, `checkpoint-N.tmp` / `.old` folders and
    half-deleted `checkpoint-N` folders (no completion marker). Returns what was removed."""
    removed = []
    for path in output_dir.iterdir():
        partial = path.name.startswith("checkpoint-") and path.suffix in (".tmp", ".old")
        half_deleted = checkpoint_name.match(path.name) and not (path / marker).is_file()
        stale = path.name == STAGING_NAME or (path.name.startswith(".") and path.name.endswith(".old"))
        if path.is_dir() and (partial or half_deleted or stale):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def holds_final_model(output_dir: str | os.PathLike) -> bool:
    """Whether `output_dir` holds a finished run's final model (a tokenizer's config.json, a pipeline's
    model_index.json: moved in last)."""
    return any((Path(output_dir) / name).is_file() for name in LAST_MOVED)


def check_not_finished(output_dir: str | os.PathLike, resumed_step: int, max_train_steps: int) -> None:
    """Refuses to resume a finished run for no step: it would train nothing and only rewrite the final model and its
    card (losing what `hf-vq evaluate` added to it). A finished run is trained further with a larger budget."""
    if not holds_final_model(output_dir):
        return  # an unfinished run, even at its budget: resuming saves the final model that a kill stopped
    args_file = Path(output_dir) / "training_args.json"
    budget = json.loads(args_file.read_text()).get("max_train_steps") if args_file.is_file() else None
    # The budget the final model was saved with (training_args.json is moved in with it): a checkpoint past it was
    # written by a later run whose own final save failed or was killed, and resuming it saves that final model.
    trained = budget if isinstance(budget, int) else resumed_step
    if resumed_step > trained:
        return
    if max_train_steps <= trained:
        raise ValueError(
            f"{output_dir} holds a finished run, trained for {trained} steps, and --max-train-steps "
            f"{max_train_steps} leaves nothing to train: resuming would only rewrite its model and card. Train it "
            f"further with --resume-from-checkpoint latest --max-train-steps N above {trained}; use it as it is by "
            "loading the folder; or start afresh with --overwrite-output-dir or another --output-dir."
        )


__all__ = [
    "abort_staged_save",
    "begin_staged_save",
    "check_not_finished",
    "commit_staged_save",
    "finish_staged_save",
    "holds_final_model",
    "remove_leftovers",
]
