"""Resumable checkpoints and the output folder: `accelerator.save_state` into a temporary folder, renamed into
place once complete; the loop's own state (`TrainingState`: step, counters, every rank's data position).

A checkpoint folder `checkpoint-{step}/` holds:

- one `save_pretrained` folder per trained model (`model/`, and `discriminator/` for a VQ-GAN) and `ema/` (with
  `--use-ema`), written by the save hook below in place of accelerate's own weight files, so any checkpoint loads
  with `from_pretrained`;
- `training_state.json`: the loop's `TrainingState` (step, data position of every rank, counters, EMA count);
  `task_state.safetensors`: the task's other state (`Task.checkpointed()`: e.g. the LeCam anchors);
- `optimizer.bin`, `optimizer_1.bin`, `scheduler.bin`, `scheduler_1.bin`: optimizer and LR-schedule states;
- `random_states_{rank}.pkl`: Python, NumPy and torch RNG states of every process;
- sharded (FSDP2, `sharding.py`): `pytorch_model_fsdp_0/` and `optimizer_0/` (torch.distributed.checkpoint, each
  process's part of the weights and of AdamW's state) in place of the model's weights and `optimizer.bin`; the model
  folder then holds its `config.json` only;
- `checkpoint_complete.json`: written last. A folder is only ever named `checkpoint-{step}` after everything
  in it was written (`checkpoint-{step}.tmp` is renamed), so a run killed mid-write leaves a `.tmp` folder that
  is never taken for a checkpoint, and the previous checkpoint intact. A checkpoint being deleted loses its
  marker first, so a half-deleted folder is never taken for one either.

Nothing is unpickled on resume: hf-vq's own state is JSON and safetensors, and accelerate's optimizer, schedule and
RNG files are read with `torch.load(weights_only=True)`, which rebuilds tensors and plain containers only; the
`.metadata` pickles of sharded checkpoints, which torch reads with a plain `pickle.load`, are first checked to name
only torch.distributed.checkpoint's own classes (`sharding.check_sharded_checkpoint`). A checkpoint folder owned by
another user is refused unless `--trust-checkpoint` (see `check_checkpoint`).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .output import commit_staged_save, holds_final_model, remove_leftovers
from .sharding import check_sharded_checkpoint, is_sharded

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "checkpoint_complete.json"
TRAINING_STATE_NAME = "training_state.json"
TASK_STATE_NAME = "task_state.safetensors"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
# Fields of a model's config.json that say where or how it was saved, not what the model is.
_CONFIG_METADATA = {"transformers_version", "_name_or_path", "architectures", "auto_map", "dtype", "torch_dtype"}


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
        if not checkpoints:
            logger.warning(
                "--resume-from-checkpoint latest: no checkpoint found in %s; starting from step 0.", output_dir
            )
        return checkpoints[-1] if checkpoints else None
    path = Path(value)
    if not path.is_dir() or not (path / COMPLETE_MARKER).is_file():
        raise FileNotFoundError(
            f"--resume-from-checkpoint {value!r} is not a complete checkpoint folder (it needs {COMPLETE_MARKER}); "
            f"complete ones in {output_dir}: {[p.name for p in list_checkpoints(output_dir)] or 'none'}."
        )
    return path


def check_checkpoint(checkpoint: Path, trust: bool = False, rank: int = 0) -> None:
    """Refuses a checkpoint folder that another user owns, unless `trust` (`--trust-checkpoint`), and one whose RNG
    state cannot be read safely (accelerate would otherwise skip it silently, and the resume would not be exact).

    Every file is read without unpickling arbitrary objects, so the ownership check is defence in depth: a
    checkpoint is a bundle of pickle-framed files, and a bug in torch's restricted unpickler would let a crafted one
    run code.
    """
    if not trust and hasattr(os, "getuid"):
        uid = os.getuid()
        foreign = [p for p in (checkpoint, *checkpoint.iterdir()) if p.stat().st_uid != uid]
        if foreign:
            raise PermissionError(
                f"--resume-from-checkpoint {checkpoint}: {foreign[0]} belongs to another user (uid "
                f"{foreign[0].stat().st_uid}, you are {uid}). Checkpoints hold pickle-framed optimizer and RNG files; "
                "hf-vq reads them with torch.load(weights_only=True), but resumes from folders you do not own only "
                "when told to: add --trust-checkpoint if you trust where it came from."
            )
    rng = checkpoint / f"random_states_{rank}.pkl"
    if rng.is_file():
        _safe_torch_load(rng)
    check_sharded_checkpoint(checkpoint)  # FSDP: torch.distributed.checkpoint's pickled `.metadata` files


def check_same_configs(checkpoint: Path, models: dict[str, nn.Module]) -> None:
    """Compares each model's config with the one saved in `checkpoint/{folder}/config.json` and names the fields
    that differ, before any weight is loaded (a mismatch would otherwise surface as a tensor `size mismatch`)."""
    for folder, module in models.items():
        saved_file = checkpoint / folder / "config.json"
        if not saved_file.is_file() or not hasattr(module, "config"):
            continue
        # Both through the config class, so fields a config.json leaves out (at their defaults) compare equal.
        config_class = type(module.config)
        saved = json.loads(config_class.from_json_file(str(saved_file)).to_json_string(use_diff=False))
        current = json.loads(module.config.to_json_string(use_diff=False))
        names = sorted((set(saved) | set(current)) - _CONFIG_METADATA)
        differ = [name for name in names if saved.get(name) != current.get(name)]
        if differ:
            shown = "; ".join(f"`{n}` {saved.get(n)!r} in the checkpoint, {current.get(n)!r} now" for n in differ[:8])
            raise ValueError(
                f"--resume-from-checkpoint {checkpoint}: its {folder} was trained with another config ({shown}"
                f"{'; ...' if len(differ) > 8 else ''}). Resume with the flags of the run that wrote it (see "
                f"{checkpoint.parent / 'training_args.json'} or {saved_file}), or train the new config in another "
                "--output-dir."
            )


def _write_marker(path: Path, record: dict) -> None:
    with open(path, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())


def delete_checkpoint(path: Path) -> None:
    """Removes the completion marker first, so an interrupted delete never leaves a folder that looks complete."""
    (path / COMPLETE_MARKER).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def _any_rank(accelerator, flag: bool) -> bool:
    return float(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum")[0]) > 0


def read_training_state(path: Path) -> dict:
    """A checkpoint's `training_state.json`, or a `ValueError` naming the file when it does not parse."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is damaged ({type(error).__name__}: {error}); its checkpoint cannot be resumed. Resume from "
            f"an earlier checkpoint with --resume-from-checkpoint {path.parent.parent / 'checkpoint-N'}, or delete "
            f"{path.parent} and resume with --resume-from-checkpoint latest."
        ) from None


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, total_limit: int | None) -> Path:
    """Writes `checkpoint-{step}` atomically (see the module docstring) and deletes the oldest beyond `total_limit`.

    Every process must call it (each saves its own RNG state). If a write fails (a full disk), the partial folder
    is removed on every rank and an `OSError` says so; the previous checkpoints are untouched.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    partial = output_dir / f"{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while writing
    accelerator.wait_for_everyone()
    failure = None
    try:
        accelerator.save_state(str(partial))
    except OSError as error:
        failure = error
    # Every rank learns whether any rank failed, so that all stop together instead of waiting for each other.
    if not _any_rank(accelerator, failure is not None) and accelerator.is_main_process:
        try:
            record = {"step": step, "time": time.time(), "num_processes": accelerator.num_processes}
            _write_marker(partial / COMPLETE_MARKER, record)
        except OSError as error:
            failure = error
    if _any_rank(accelerator, failure is not None):
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        accelerator.wait_for_everyone()
        reason = (failure.strerror or str(failure)) if failure is not None else "another process failed to write"
        if failure is not None and failure.errno == errno.ENOSPC:
            reason = "the disk is full"
        kept = list_checkpoints(output_dir)
        raise OSError(
            failure.errno if failure is not None else errno.EIO,
            f"Could not write checkpoint {final} ({reason}); the partial folder was removed. "
            f"Last complete checkpoint: {kept[-1] if kept else 'none'}. Free some space (or lower "
            f"--checkpoints-total-limit) and continue with --resume-from-checkpoint latest.",
        )
    if accelerator.is_main_process:
        old = final.with_name(final.name + ".old")
        if final.exists():  # the same step saved again (e.g. the end of a run that just checkpointed)
            (final / COMPLETE_MARKER).unlink(missing_ok=True)
            os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
        if total_limit is not None:
            for stale in list_checkpoints(output_dir)[:-total_limit]:
                logger.info("Removing old checkpoint %s (--checkpoints-total-limit %d)", stale, total_limit)
                delete_checkpoint(stale)
    accelerator.wait_for_everyone()
    return final


def load_pretrained_weights(module: nn.Module, folder: str | os.PathLike) -> None:
    """Loads the weights of a `save_pretrained` folder (one safetensors file, or shards with an index) into an
    existing module, strictly, in place."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {k: v for shard in shards for k, v in load_file(str(folder / shard)).items()}
    else:
        state = load_file(str(folder / "model.safetensors"))
    module.load_state_dict(state, strict=True)


def _save_without_card(module: nn.Module, folder: str) -> None:
    # No model card in checkpoints: the card belongs to the final model (hf-vq models write one by default).
    if "write_model_card" in inspect.signature(module.save_pretrained).parameters:
        module.save_pretrained(folder, write_model_card=False)
    else:
        module.save_pretrained(folder)


def _safe_torch_load(path: Path) -> dict:
    """A pickle-framed state written by an earlier hf-vq (`custom_checkpoint_*.pkl`), read without running code."""
    from accelerate.utils import load

    try:
        return load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{Path(path).resolve()} cannot be read with torch.load(weights_only=True) ({type(error).__name__}); it "
            "was not written by hf-vq, or it is corrupt. hf-vq never unpickles checkpoint files: that would run any "
            "code inside them."
        ) from None


@contextlib.contextmanager
def _without_pickled_state(checkpoint: Path):
    """`checkpoint`, or for one written before the JSON state (its `custom_checkpoint_*.pkl`, which accelerate would
    unpickle with weights_only=False) a view of it with those renamed `legacy_state_*.pkl`, read safely by the hook."""
    legacy = sorted(checkpoint.glob("custom_checkpoint_*.pkl"))
    if not legacy:
        yield checkpoint
        return
    with tempfile.TemporaryDirectory(prefix="hf-vq-resume-") as view:
        for entry in checkpoint.iterdir():
            name = entry.name.replace("custom_checkpoint_", "legacy_state_")
            os.symlink(entry.resolve(), Path(view, name), target_is_directory=entry.is_dir())
        yield Path(view)


def register_checkpoint_hooks(accelerator, models: dict[str, nn.Module], ema=None, state=None, stateful=()) -> None:
    """Makes `save_state` / `load_state` write and read one `save_pretrained` folder per model (`models` maps
    folder names to the unwrapped modules) and `ema/`, instead of accelerate's own weight files, and the loop's
    `state` (a [`TrainingState`]) and the task's `stateful` modules as JSON and safetensors instead of pickles.
    `ema` is a `torch.optim.swa_utils.AveragedModel` of one of the models."""
    stateful = list(stateful)

    def named(prepared):
        folders = []
        for m in prepared:
            unwrapped = accelerator.unwrap_model(m)
            folders.append(next((name for name, module in models.items() if module is unwrapped), None))
        return folders

    def save_hook(prepared, weights, output_dir):
        names = named(prepared)
        sharded = is_sharded(accelerator)  # FSDP: accelerate writes the weights as sharded checkpoint folders
        if accelerator.is_main_process:
            for name in names:
                if name is not None and sharded:
                    models[name].config.save_pretrained(os.path.join(output_dir, name))  # for check_same_configs
                elif name is not None:
                    _save_without_card(models[name], os.path.join(output_dir, name))
            if ema is not None:
                _save_without_card(ema.module, os.path.join(output_dir, "ema"))
            if state is not None:
                Path(output_dir, TRAINING_STATE_NAME).write_text(json.dumps(state.state_dict(), indent=1) + "\n")
            if stateful:
                tensors = {
                    f"{i}.{k}": v.detach().cpu().contiguous()
                    for i, m in enumerate(stateful)
                    for k, v in m.state_dict().items()
                }
                save_file(tensors, os.path.join(output_dir, TASK_STATE_NAME))
        # Weights are in the folders above: stop accelerate from writing a second copy of each.
        for i in reversed(range(len(prepared))):
            if names[i] is not None and not sharded:
                weights.pop(i)

    def load_hook(prepared, input_dir):
        names = named(prepared)
        for i in reversed(range(len(prepared))):
            if names[i] is not None:
                load_pretrained_weights(accelerator.unwrap_model(prepared[i]), os.path.join(input_dir, names[i]))
                prepared.pop(i)
        if ema is not None:
            load_pretrained_weights(ema.module, os.path.join(input_dir, "ema"))
        folder = Path(input_dir)
        legacy = not (folder / TRAINING_STATE_NAME).is_file()  # written by hf-vq before the JSON state
        if state is not None:
            path = folder / ("legacy_state_0.pkl" if legacy else TRAINING_STATE_NAME)
            state.load_state_dict(_safe_torch_load(path) if legacy else read_training_state(path))
        if legacy:
            for i, module in enumerate(stateful):
                module.load_state_dict(_safe_torch_load(folder / f"legacy_state_{i + 1}.pkl"))
        elif stateful:
            tensors = load_file(str(folder / TASK_STATE_NAME))
            for i, module in enumerate(stateful):
                module.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{i}.")})

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


@dataclass
class TrainingState:
    """What the loop itself must remember across a resume; saved as `training_state.json` in each checkpoint."""

    global_step: int = 0  # optimizer steps taken (skipped non-finite steps not included)
    micro_steps: int = 0  # batches consumed
    epochs: list[int] = field(default_factory=lambda: [0])  # per rank: current epoch of the data stream
    batches_in_epoch: list[int] = field(default_factory=lambda: [0])  # per rank: batches consumed in that epoch
    images_seen: int = 0  # examples (images, for a tokenizer), all ranks together; named as in older checkpoints
    skipped_records: int = 0  # corrupt / non-image records dropped, all ranks together
    empty_batches: int = 0  # batches that held no readable example on some rank: skipped data, not a step
    consecutive_empty_batches: int = 0
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0
    ema_updates: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def check_output_dir(args) -> None:
    """Validates `--output-dir` without touching it: a folder (or a path that can become one) this user may
    write, and not an earlier run's unless told to resume or overwrite (`args`: `LoopArguments`)."""
    output_dir = Path(args.output_dir)
    flag = f"--output-dir {args.output_dir!r}"
    existing = output_dir
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except PermissionError:  # a parent folder this user may not enter
        raise PermissionError(
            f"{flag}: you may not look inside {existing.parent}. Pick an --output-dir in a folder you can write to."
        ) from None
    if not existing.is_dir():
        raise NotADirectoryError(
            f"{flag}: {existing} is a file, not a folder, so the output folder cannot be created there. Pick an "
            "--output-dir outside it."
        )
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise PermissionError(
            f"{flag}: you may not write in {existing}. Pick an --output-dir in a folder you can write to (or "
            "change its permissions)."
        )
    checkpoints = list_checkpoints(output_dir)
    has_model = holds_final_model(output_dir)
    if (checkpoints or has_model) and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        go_on = "Continue it with --resume-from-checkpoint latest"
        if has_model:
            go_on = "Train it further with --resume-from-checkpoint latest and a larger --max-train-steps"
        raise FileExistsError(
            f"{output_dir} already holds {'a trained model' if has_model else 'checkpoints'} from an earlier run. "
            f"{go_on}, start afresh with --overwrite-output-dir, or pick another --output-dir."
        )


def prepare_output_dir(args, accelerator, output_names: tuple[str, ...] = ()) -> None:
    """Creates the output folder, once the run is known to be valid ([`check_output_dir`] and every build step
    passed): `--overwrite-output-dir` removes the earlier run's checkpoints, logs and `output_names` (what the
    task's final save writes) only now. Finishes or removes what a killed run left (see `output.py`)."""
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        commit_staged_save(output_dir)  # a final save killed after it was complete: finish moving it in
        remove_leftovers(output_dir, _CHECKPOINT_NAME, COMPLETE_MARKER)
        if args.overwrite_output_dir and args.resume_from_checkpoint is None:
            for checkpoint in list_checkpoints(output_dir):
                delete_checkpoint(checkpoint)
            for path in (output_dir / name for name in ("logs", "training_args.json", *output_names)):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    accelerator.wait_for_everyone()


def resume(
    accelerator, state: TrainingState, checkpoint: Path | None, max_train_steps: int, ema=None
) -> tuple[int, int]:
    """Loads weights, optimizers, schedules, RNG and counters from `checkpoint` (into `state`, an `ema`
    `AveragedModel`'s count too). Returns this rank's (epoch, batches to replay); (0, 0) on a fresh start."""
    if checkpoint is None:
        return 0, 0
    logger.info("Resuming from %s", checkpoint)
    try:
        with _without_pickled_state(checkpoint) as folder:
            accelerator.load_state(str(folder), load_kwargs={"weights_only": True})
    except (
        RuntimeError,
        KeyError,
        pickle.UnpicklingError,
    ) as error:  # e.g. changed parameter groups; a crafted pickle
        message = " ".join(str(error).split())[:300]
        raise ValueError(
            f"--resume-from-checkpoint {checkpoint}: its state does not fit this run ({type(error).__name__}: "
            f"{message}). Resume with the flags of the run that wrote it ({checkpoint.parent / 'training_args.json'})."
        ) from None
    if ema is not None:
        ema.n_averaged.fill_(state.ema_updates)
    if len(state.epochs) != accelerator.num_processes:
        raise ValueError(
            f"{checkpoint} was written by {len(state.epochs)} processes; resume it with the same number (this run "
            f"has {accelerator.num_processes}) so that every rank continues from its own data position."
        )
    if state.global_step > max_train_steps:
        logger.warning(
            "%s is at step %d, past --max-train-steps %d: nothing is trained, and the final model saved now is the "
            "step-%d one (training_args.json records the budget you gave, %d). Give --max-train-steps above %d to "
            "train on.",
            checkpoint,
            state.global_step,
            max_train_steps,
            state.global_step,
            max_train_steps,
            state.global_step,
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
    "TASK_STATE_NAME",
    "TRAINING_STATE_NAME",
    "TrainingState",
    "check_checkpoint",
    "check_output_dir",
    "check_same_configs",
    "delete_checkpoint",
    "gather_positions",
    "list_checkpoints",
    "load_pretrained_weights",
    "prepare_output_dir",
    "read_training_state",
    "register_checkpoint_hooks",
    "resolve_resume_checkpoint",
    "resume",
    "save_checkpoint",
]
