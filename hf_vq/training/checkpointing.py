"""Resumable checkpoints: `accelerator.save_state` into a temporary folder, renamed into place once complete.

A checkpoint folder `checkpoint-{step}/` holds:

- `model/`, `ema/` (with `--use-ema`), `discriminator/` (VQ-GAN): `save_pretrained` folders, written by the
  save hook below in place of accelerate's own weight files, so any checkpoint loads with `from_pretrained`;
- `optimizer.bin`, `optimizer_1.bin`, `scheduler.bin`, `scheduler_1.bin`: optimizer and LR-schedule states;
- `random_states_{rank}.pkl`: Python, NumPy and torch RNG states of every process;
- `custom_checkpoint_0.pkl`: the loop's `TrainingState` (step, data position of every rank, counters, EMA count);
- `checkpoint_complete.json`: written last. A folder is only ever named `checkpoint-{step}` after everything
  in it was written (`checkpoint-{step}.tmp` is renamed), so a run killed mid-write leaves a `.tmp` folder that
  is never taken for a checkpoint, and the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "checkpoint_complete.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first (a folder without the marker is not one)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT_NAME.match(path.name)
        if match and path.is_dir() and (path / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def resolve_resume_checkpoint(value: str | None, output_dir: str | os.PathLike) -> Path | None:
    """`--resume-from-checkpoint`: `latest` (None if there is none yet: a fresh start) or a checkpoint folder."""
    if value is None:
        return None
    if value == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(value)
    if not path.is_dir() or not (path / COMPLETE_MARKER).is_file():
        raise FileNotFoundError(
            f"--resume-from-checkpoint {value!r} is not a complete checkpoint folder (it needs {COMPLETE_MARKER}); "
            f"complete ones in {output_dir}: {[p.name for p in list_checkpoints(output_dir)] or 'none'}."
        )
    return path


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, total_limit: int | None) -> Path:
    """Writes `checkpoint-{step}` atomically (see the module docstring) and deletes the oldest beyond `total_limit`.

    Every process must call it (each saves its own RNG state).
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    partial = output_dir / f"{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while writing
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker = partial / COMPLETE_MARKER
        with open(marker, "w") as f:
            json.dump({"step": step, "time": time.time(), "num_processes": accelerator.num_processes}, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # the same step saved again (e.g. the end of a run that just checkpointed)
            shutil.rmtree(final)
        os.replace(partial, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                logger.info("Removing old checkpoint %s (--checkpoints-total-limit %d)", old, total_limit)
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_pretrained_weights(module: nn.Module, folder: str | os.PathLike) -> None:
    """Loads the weights of a `save_pretrained` folder into an existing module, strictly, in place."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(module, str(folder), strict=True)
        return
    state = load_file(str(folder / "model.safetensors"))
    module.load_state_dict(state, strict=True)


def register_checkpoint_hooks(accelerator, *, model, discriminator=None, ema=None) -> None:
    """Makes `save_state` / `load_state` write and read `model/`, `ema/`, `discriminator/` `save_pretrained`
    folders instead of accelerate's own weight files. `ema` is a `torch.optim.swa_utils.AveragedModel`."""

    def named(models):
        names = []
        for m in models:
            unwrapped = accelerator.unwrap_model(m)
            names.append("model" if unwrapped is model else "discriminator" if unwrapped is discriminator else None)
        return names

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for name in named(models):
                if name == "model":
                    # No model card in checkpoints: the card belongs to the final model.
                    model.save_pretrained(os.path.join(output_dir, name), write_model_card=False)
                elif name == "discriminator":
                    discriminator.save_pretrained(os.path.join(output_dir, name))
            if ema is not None:
                ema.module.save_pretrained(os.path.join(output_dir, "ema"), write_model_card=False)
        # Weights are in the folders above: stop accelerate from writing a second copy of each.
        for i in reversed(range(len(models))):
            if named(models)[i] is not None:
                weights.pop(i)

    def load_hook(models, input_dir):
        for i in reversed(range(len(models))):
            name = named(models)[i]
            if name is not None:
                load_pretrained_weights(accelerator.unwrap_model(models[i]), os.path.join(input_dir, name))
                models.pop(i)
        if ema is not None:
            load_pretrained_weights(ema.module, os.path.join(input_dir, "ema"))

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


__all__ = [
    "COMPLETE_MARKER",
    "list_checkpoints",
    "load_pretrained_weights",
    "register_checkpoint_hooks",
    "resolve_resume_checkpoint",
    "save_checkpoint",
]

