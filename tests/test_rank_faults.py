"""A fault on one rank only ends the whole job (issue #27): two CPU processes (gloo) train a tiny VQ-VAE, and a fault
that only one of them meets (a parquet shard only rank 1 reads, damaged mid-file; a full disk under the final save,
which only the main process writes) stops both ranks within seconds, with the faulty rank's message said once, by
rank 0.

Without the shared error flag, the healthy rank waits for the faulty one at its next collective until the process
group times out (30 minutes with gloo). The two ranks are forked from this test process, which has already imported
torch, transformers and accelerate (an `accelerate launch` spends ~10 s of CPU per process on imports alone); each
sets the environment `accelerate launch` would give it and runs `hf_vq.cli.main`, as the launched command would.
"""

from __future__ import annotations

import errno
import faulthandler
import logging
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import tiny_train_flags, write_image_parquet_shards

pytestmark = pytest.mark.slow
DEADLINE = 60  # seconds for the whole job to end; it takes a few


def run_rank(rank: int, port: int, argv: list[str], log: str, fault=None) -> None:
    """One rank of a 2-process job, in a forked child: the launcher's environment, fresh accelerate state and
    logging, stdout and stderr to `log`, then `fault()` if given; exits with `hf-vq`'s status."""
    status = 3
    try:
        env = dict(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2, LOCAL_WORLD_SIZE=2, MASTER_ADDR="127.0.0.1")
        os.environ.update({key: str(value) for key, value in env.items()}, MASTER_PORT=str(port))
        os.environ.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
        torch.set_num_threads(1)  # as DataLoader workers do: OpenMP's thread pool does not survive a fork
        with open(log, "w", buffering=1) as stream:
            os.dup2(stream.fileno(), 1)
            os.dup2(stream.fileno(), 2)
            sys.stdout = sys.stderr = stream
            root = logging.getLogger()
            for handler in list(root.handlers):  # pytest's capture handlers: the run configures its own logging
                root.removeHandler(handler)
            from accelerate.state import AcceleratorState, PartialState

            AcceleratorState._reset_state(reset_partial_state=True)  # the test process may have built one
            PartialState._reset_state()
            if fault is not None:
                fault()
            faulthandler.dump_traceback_later(DEADLINE - 5, file=stream)  # where a rank waits, should one hang

            from hf_vq.cli import main

            status = main(argv)
    finally:
        os._exit(status)


def run_job(tmp_path, argv: list[str], faults=(None, None)) -> tuple[list[int], list[str], float]:
    """Both ranks of `hf-vq ARGV` (`faults`: what each rank injects first); their exit statuses, what each printed,
    and the seconds until both ended."""
    with socket.socket() as probe:  # a free port: another test may run a process group at the same time (xdist)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logs = [str(tmp_path / f"rank{rank}.log") for rank in range(2)]
    context = multiprocessing.get_context("fork")
    start = time.perf_counter()
    ranks = [context.Process(target=run_rank, args=(rank, port, argv, logs[rank], faults[rank])) for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=max(1.0, DEADLINE - (time.perf_counter() - start)))
    seconds = time.perf_counter() - start
    hung = [process for process in ranks if process.is_alive()]
    for process in hung:
        process.kill()
        process.join()
    texts = [Path(log).read_text() for log in logs]
    assert not hung, f"a rank was still waiting after {DEADLINE} s:\n" + "\n".join(t[-2000:] for t in texts)
    return [process.exitcode for process in ranks], texts, seconds


def flags(output_dir, data, *extra):
    run = ["--dataset-name", str(data), "--shuffle-buffer-size", "0", "--lr-warmup-steps", "0", "--eval-steps", "0"]
    run += ["--image-logging-steps", "0", "--train-batch-size", "1", "--checkpointing-steps", "0"]
    return ["train", *tiny_train_flags(output_dir, *run, *extra, model_type="vqvae", num_eval_images=1)]


def test_a_shard_only_rank_1_reads_stops_both_ranks_with_its_message_once(tmp_path):
    import pyarrow.parquet as pq

    # Two shards, one per rank (accelerate gives rank r the r-th); the second has a damaged page: its footer reads
    # (the start-up check passes on both ranks), its rows do not, so only rank 1 meets it, on its first batch.
    shard = write_image_parquet_shards(tmp_path, num_images=8, step=20)[1]
    offset = pq.read_metadata(shard).row_group(0).column(0).data_page_offset
    data = bytearray(shard.read_bytes())
    data[offset : offset + 8] = b"\xff" * 8
    shard.write_bytes(bytes(data))
    run = tmp_path / "run"

    codes, (rank0, rank1), seconds = run_job(tmp_path, flags(run, tmp_path / "data", "--max-train-steps", "20"))

    assert codes == [1, 1] and seconds < DEADLINE
    said = f"hf-vq train: On process 1 of 2: Reading the training data ({tmp_path / 'data'} (train)) failed"
    assert rank0.count(said) == 1 and "Repair or remove it" in rank0, rank0[-3000:]
    assert "Reading the training data" not in rank1 and "Traceback" not in rank0 + rank1
    assert not (run / "config.json").exists() and not (run / "checkpoint-1").exists()


def disk_full_during_the_final_save() -> None:
    """The task's final save writes its files and then the disk is full (ENOSPC), as in tests/test_crash_safety.py."""
    from hf_vq.training.tokenizer import TokenizerTask

    save = TokenizerTask.save

    def save_then_fail(self, run):
        save(self, run)
        raise OSError(errno.ENOSPC, "No space left on device")

    TokenizerTask.save = save_then_fail


def test_disk_full_during_the_main_process_final_save_stops_the_other_rank_too(tmp_path):
    write_image_parquet_shards(tmp_path, num_images=4, step=20)
    run = tmp_path / "run"

    argv = flags(run, tmp_path / "data", "--max-train-steps", "1")
    codes, (rank0, rank1), seconds = run_job(tmp_path, argv, faults=(disk_full_during_the_final_save, None))

    assert codes == [2, 2] and seconds < DEADLINE
    said = f"hf-vq train: error: On process 0 of 2: Could not write the final model into {run} (No space left"
    assert rank0.count(said) == 1 and "the folder is as it was before the save" in rank0, rank0[-3000:]
    assert "Could not write" not in rank1 and "Traceback" not in rank0 + rank1
    assert not [p.name for p in run.iterdir()]  # the staged save was removed; nothing else had been written


def disk_full_under_the_sample_grid() -> None:
    """The disk is full when PIL writes a file (the main process's sample grid, during training)."""
    from PIL import Image

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    Image.Image.save = full


def test_disk_full_under_the_main_process_sample_grid_stops_the_other_rank_at_the_next_step(tmp_path):
    write_image_parquet_shards(tmp_path, num_images=8, step=20)
    run = tmp_path / "run"

    argv = flags(run, tmp_path / "data", "--max-train-steps", "3", "--image-logging-steps", "1")
    codes, (rank0, rank1), seconds = run_job(tmp_path, argv, faults=(disk_full_under_the_sample_grid, None))

    assert codes == [1, 1] and seconds < DEADLINE
    said = f"hf-vq train: On process 0 of 2: No space left on device: '{run / 'samples' / 'step-0000001.png'}'"
    assert rank0.count(said) == 1, rank0[-3000:]
    assert "No space left" not in rank1 and "Traceback" not in rank0 + rank1
    assert not (run / "config.json").exists()
