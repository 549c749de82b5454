"""A fault on one rank only ends the whole job (issue #27): two CPU processes (gloo) train a tiny VQ-VAE, and a fault
that only one of them meets (a parquet shard only rank 1 reads, damaged mid-file; a full disk under the final save,
which only the main process writes) stops both ranks within seconds, with the faulty rank's message said once, by
rank 0.

Without the shared error flag, the healthy rank waits for the faulty one at its next collective until the process
group times out (30 minutes with gloo). The two ranks are forked from this test process (`helpers.ranks`), with the
environment `accelerate launch` would give them.
"""

from __future__ import annotations

import errno

import pytest

from helpers import tiny_train_flags, write_image_parquet_shards
from helpers.ranks import run_job

pytestmark = pytest.mark.slow
DEADLINE = 60  # seconds for the whole job to end; it takes a few


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

    codes, (rank0, rank1), seconds = run_job(
        tmp_path, flags(run, tmp_path / "data", "--max-train-steps", "20"), deadline=DEADLINE
    )

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
    codes, (rank0, rank1), seconds = run_job(
        tmp_path, argv, (disk_full_during_the_final_save, None), deadline=DEADLINE
    )

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
    codes, (rank0, rank1), seconds = run_job(
        tmp_path, argv, (disk_full_under_the_sample_grid, None), deadline=DEADLINE
    )

    assert codes == [1, 1] and seconds < DEADLINE
    said = f"hf-vq train: On process 0 of 2: No space left on device: '{run / 'samples' / 'step-0000001.png'}'"
    assert rank0.count(said) == 1, rank0[-3000:]
    assert "No space left" not in rank1 and "Traceback" not in rank0 + rank1
    assert not (run / "config.json").exists()
