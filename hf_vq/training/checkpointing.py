"""Resumable checkpoints and the output folder: `accelerator.save_state` into a temporary folder, renamed into
place once complete; the loop's own state (`TrainingState`: step, counters, every rank's data position).

A checkpoint folder `checkpoint-{step}/` holds:

- one `save_pretrained` folder per trained model (`model/`, and `discriminator/` for a VQ-GAN) and `ema/` (with
  `--use-ema`), written by the save hook below in place of accelerate's own weight files, so any checkpoint loads
  with `from_pretrained`;
- `optimizer.bin`, `optimizer_1.bin`, `scheduler.bin`, `scheduler_1.bin`: optimizer and LR-schedule states;
- `random_states_{rank}.pkl`: Python, NumPy and torch RNG states of every process;
- `custom_checkpoint_0.pkl`: the loop's `TrainingState` (step, data position of every rank, counters, EMA count);
  `custom_checkpoint_1.pkl`, ...: the task's other state (`Task.checkpointed()`: e.g. the LeCam anchors);
- `checkpoint_complete.json`: written last. A folder is only ever named `checkpoint-{step}` after everything
  in it was written (`checkpoint-{step}.tmp` is renamed), so a run killed mid-write leaves a `.tmp` folder that
  is never taken for a checkpoint, and the previous checkpoint intact.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
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


def _save_without_card(module: nn.Module, folder: str) -> None:
    # No model card in checkpoints: the card belongs to the final model (hf-vq models write one by default).
    if "write_model_card" in inspect.signature(module.save_pretrained).parameters:
        module.save_pretrained(folder, write_model_card=False)
    else:
        module.save_pretrained(folder)


def register_checkpoint_hooks(accelerator, models: dict[str, nn.Module], ema=None) -> None:
    """Makes `save_state` / `load_state` write and read one `save_pretrained` folder per model (`models` maps
    folder names to the unwrapped modules) and `ema/`, instead of accelerate's own weight files. `ema` is a
    `torch.optim.swa_utils.AveragedModel` of one of them."""

    def named(prepared):
        folders = []
        for m in prepared:
            unwrapped = accelerator.unwrap_model(m)
            folders.append(next((name for name, module in models.items() if module is unwrapped), None))
        return folders

    def save_hook(prepared, weights, output_dir):
        names = named(prepared)
        if accelerator.is_main_process:
            for name in names:
                if name is not None:
                    _save_without_card(models[name], os.path.join(output_dir, name))
            if ema is not None:
                _save_without_card(ema.module, os.path.join(output_dir, "ema"))
        # Weights are in the folders above: stop accelerate from writing a second copy of each.
        for i in reversed(range(len(prepared))):
            if names[i] is not None:
                weights.pop(i)

    def load_hook(prepared, input_dir):
        names = named(prepared)
        for i in reversed(range(len(prepared))):
            if names[i] is not None:
                load_pretrained_weights(accelerator.unwrap_model(prepared[i]), os.path.join(input_dir, names[i]))
                prepared.pop(i)
        if ema is not None:
            load_pretrained_weights(ema.module, os.path.join(input_dir, "ema"))

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


@dataclass
class TrainingState:
    """What the loop itself must remember across a resume; checkpointed with `register_for_checkpointing`."""

    global_step: int = 0  # optimizer steps taken (skipped non-finite steps not included)
    micro_steps: int = 0  # batches consumed
    epochs: list[int] = field(default_factory=lambda: [0])  # per rank: current epoch of the data stream
    batches_in_epoch: list[int] = field(default_factory=lambda: [0])  # per rank: batches consumed in that epoch
    images_seen: int = 0  # examples (images, for a tokenizer), all ranks together; named as in older checkpoints
    skipped_records: int = 0  # corrupt / non-image records dropped, all ranks together
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0
    ema_updates: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def prepare_output_dir(args, accelerator, output_names: tuple[str, ...] = ()) -> None:
    """Refuses to write over an earlier run unless told to resume or overwrite (`args`: `LoopArguments`); the
    overwrite removes its checkpoints, logs and `output_names` (what the task's final save writes)."""
    output_dir = Path(args.output_dir)
    existing = list_checkpoints(output_dir)
    has_model = (output_dir / "config.json").is_file()
    if (existing or has_model) and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        raise FileExistsError(
            f"{output_dir} already holds {'checkpoints' if existing else 'a trained model'} from an earlier run. "
            "Continue it with --resume-from-checkpoint latest, start afresh with --overwrite-output-dir, or pick "
            "another --output-dir."
        )
    if accelerator.is_main_process:
        if args.overwrite_output_dir and args.resume_from_checkpoint is None and output_dir.is_dir():
            for path in [*output_dir.glob("checkpoint-*"), *(output_dir / name for name in ("logs", *output_names))]:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()


def resume(
    accelerator, state: TrainingState, value: str | None, output_dir: str | os.PathLike, ema=None
) -> tuple[int, int]:
    """`--resume-from-checkpoint value`: loads weights, optimizers, schedules, RNG and counters (into `state`, an
    `ema` `AveragedModel`'s count too). Returns this rank's (epoch, batches to replay); (0, 0) on a fresh start."""
    checkpoint = resolve_resume_checkpoint(value, output_dir)
    if checkpoint is None:
        return 0, 0
    logger.info("Resuming from %s", checkpoint)
    accelerator.load_state(str(checkpoint))
    if ema is not None:
        ema.n_averaged.fill_(state.ema_updates)
    if len(state.epochs) != accelerator.num_processes:
        raise ValueError(
            f"{checkpoint} was written by {len(state.epochs)} processes; resume it with the same number (this run "
            f"has {accelerator.num_processes}) so that every rank continues from its own data position."
        )
    rank = accelerator.process_index
    return state.epochs[rank], state.batches_in_epoch[rank]


def gather_positions(accelerator, epoch: int, batches_in_epoch: int) -> tuple[list[int], list[int]]:
    """Every rank's (epoch, batches consumed in it): ranks can be at different points of their own shards."""
    local = torch.tensor([[epoch, batches_in_epoch]], device=accelerator.device)
    everyone = accelerator.gather(local).cpu().tolist()
    return [e for e, _ in everyone], [b for _, b in everyone]


__all__ = [
    "COMPLETE_MARKER",
    "TrainingState",
    "gather_positions",
    "list_checkpoints",
    "load_pretrained_weights",
    "prepare_output_dir",
    "register_checkpoint_hooks",
    "resolve_resume_checkpoint",
    "resume",
    "save_checkpoint",
]
