"""How a run stops other than by finishing, so that it says why in one paragraph, on every rank together, and leaves
the output folder as it was or with a checkpoint to continue from:

- Ctrl-C: [`Interrupted`], a `KeyboardInterrupt` that says at which step, what was kept (the last checkpoint) and the
  flags that continue; `hf_vq.cli` prints it as one line.
- A fault on one rank only (a shard only it reads, a full disk under the final save on the main process): every rank
  reaches [`stop_if_any_rank_failed`] at the same point, learns of it in one all-reduce and raises the faulty rank's
  message, instead of waiting for it at the next collective until the process group times out.
- A shard that cannot be read mid-run ([`read_batches`], [`DataReadError`]) and a training split of fewer examples
  than one batch ([`NoFullBatchError`], with the count and the fix).
"""

from __future__ import annotations

import re

import torch

from .arguments import LoopArguments
from .checkpointing import list_checkpoints
from .monitoring import counted
from .task import Run


class DataReadError(RuntimeError):
    """The training data loader raised: a shard that cannot be read (see `read_batches`)."""


class NoFullBatchError(ValueError):
    """An epoch of the training data held no full batch: fewer examples than one batch of every process."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run: `message` says at which step and what was kept, `continue_flags` are the flags that
    continue it on the same command line (`hf_vq.cli` prints both as one line)."""

    def __init__(self, message: str, continue_flags: dict[str, str] | None):
        super().__init__(message)
        self.message, self.continue_flags = message, continue_flags


def interruption(args: LoopArguments, step: int | None) -> Interrupted:
    """What Ctrl-C at `step` (None: before the first) leaves: the last checkpoint, continued with
    --resume-from-checkpoint latest; or, before the first checkpoint, a folder that the same command reuses."""
    checkpoints = list_checkpoints(args.output_dir)
    at = f" at step {step}" if step is not None else " before the first step"
    if checkpoints:
        flags = {"--output-dir": args.output_dir, "--resume-from-checkpoint": "latest"}
        return Interrupted(f"{at}; kept the last checkpoint, {checkpoints[-1]}. Continue with:", flags)
    return Interrupted(
        f"{at}, before the first checkpoint: nothing was kept. Start again with:", {"--output-dir": args.output_dir}
    )


def read_batches(batches, description: str):
    """`batches`, with a read failure (a corrupt parquet shard raises `pyarrow.ArrowInvalid`, a `ValueError`; a
    vanished file an `OSError`) yielded as a [`DataReadError`] naming the data source, and the stream ended: the
    loop stops every rank on it ([`stop_if_any_rank_failed`]). Such a shard stops the run instead of being skipped:
    skipping it would silently change the data and break exact resume. Unreadable *records* are another matter: the
    data pipeline skips and counts them (`hf_vq.data`)."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (OSError, ValueError) as error:
            lines = str(error).strip().splitlines() or [type(error).__name__]
            yield DataReadError(
                f"Reading the training data ({description}) failed: {lines[-1].strip()} A shard that cannot be read "
                "stops the run rather than being skipped (that would change the data and break exact resume); the "
                "`datasets` error logged above names the file. Repair or remove it, then continue with "
                "--resume-from-checkpoint latest."
            )
            return
        yield batch


def message_of(error: Exception) -> str:
    """What an error says, without an OSError's `[Errno N]` (its file name kept)."""
    return re.sub(r"^\[Errno [^\]]*\] ", "", str(error))


def stop_if_any_rank_failed(accelerator, failure: Exception | None) -> None:
    """Raises `failure`, or on every rank the failure of any rank: a fault on one rank (a shard it alone reads, a
    full disk under its save) would otherwise leave the others waiting for it at their next collective. Every rank
    calls it at the same point; with several processes it costs one all-reduce of one number, and the failing
    rank's message reaches all of them (the main process says it)."""
    if accelerator.num_processes == 1:
        if failure is not None:
            raise failure
        return
    flag = torch.tensor([float(failure is not None)], device=accelerator.device)
    if float(accelerator.reduce(flag, reduction="sum")[0]) == 0:
        return
    from accelerate.utils import gather_object

    reports = gather_object([(accelerator.process_index, failure)])
    # Once more together before raising: a gloo worker thread frees the gathered tensors (which takes the GIL) after
    # the gather returns; if the process group were torn down first, its destructor (holding the GIL) would wait
    # for that thread forever. The barrier releases the GIL while it waits.
    accelerator.wait_for_everyone()
    rank, first = next((rank, error) for rank, error in reports if error is not None)
    text = f"On process {rank} of {accelerator.num_processes}: {message_of(first)}"
    raise OSError(first.errno, text) if isinstance(first, OSError) and first.errno else type(first)(text)


def no_full_batch_message(run: Run) -> str:
    """Why an epoch held no full batch (a batch is never padded: `drop_last`), with the count and the fix."""
    args, processes, kind = run.args, run.accelerator.num_processes, run.task.example_name
    try:
        count = sum(1 for _ in run.data.dataloader.dataset)  # fewer than a batch per process: quick to count
    except Exception:  # the count is a courtesy: the message stands without it
        count = None
    per_batch = args.train_batch_size * processes
    split = f"The training split of {run.data.description}"
    if count is None or count >= per_batch:
        return f"{split} yielded no full batch of {args.train_batch_size} {kind} on each of {processes} process(es)."
    over = f" on each of {processes} processes" if processes > 1 else ""
    return (
        f"{split} holds {counted(count, kind.removesuffix('s'))}, fewer than one batch of --train-batch-size "
        f"{args.train_batch_size}{over} (a batch is never padded). Give --train-batch-size "
        f"{max(1, count // processes)} or less, or more {kind}. Nothing was written."
    )


__all__ = [
    "DataReadError",
    "Interrupted",
    "NoFullBatchError",
    "interruption",
    "message_of",
    "no_full_batch_message",
    "read_batches",
    "stop_if_any_rank_failed",
]
