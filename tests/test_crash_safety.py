"""Nothing lost (issue #17): what a failed start, a kill, a full disk, unreadable data or a foreign checkpoint leave
behind. Faults are injected where the operating system or a library would raise them (a write that fails with
ENOSPC, a kill inside `shutil.rmtree` or inside the weights writer); tiny VQ-VAE runs on a folder of four images.
"""

import errno
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vq import VQGANConfig, VQGANModel
from hf_vq.cli import main
from hf_vq.training import parse_args, train
from hf_vq.training.checkpointing import list_checkpoints, resolve_resume_checkpoint

from helpers import TINY_VQGAN, TINY_VQVAE, tiny_train_flags, write_image_parquet_shards, write_random_images


class Killed(BaseException):
    """What a kill -9 looks like from inside the process: nothing after it runs, no `except Exception` sees it."""


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_images(folder: Path, good: int = 4, bad: int = 0) -> Path:
    write_random_images(folder, good, prefix="good-")
    for i in range(bad):
        (folder / f"bad-{i}.png").write_text("not an image")
    return folder


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "images")


def flags(output_dir, images, *extra):
    run = ["--dataset-name", str(images), "--lr-warmup-steps", "0", "--eval-steps", "0", "--image-logging-steps", "0"]
    run += ["--max-train-steps", "2", "--checkpointing-steps", "1"]
    return tiny_train_flags(output_dir, *run, *extra, model_type="vqvae")


# ------------------------------------------------------------------------------------------------ start-up


@pytest.mark.parametrize(
    "mistake",
    [
        ["--model-config", json.dumps({**TINY_VQVAE, "num_vq_embeddings": "many"})],
        ["--dataset-name", "./my_photos"],
        ["--max-train-steps", "3", "--model-config", json.dumps({**TINY_VQVAE, "hidden_channels": -8})],
    ],
    ids=["config-type", "missing-dataset", "negative-channels"],
)
def test_overwrite_with_an_invalid_run_leaves_the_old_folder_intact(tmp_path, images, capsys, mistake):
    """The issue's data loss: a typo plus --overwrite-output-dir wiped 20 of 21 files of the earlier run."""
    old = tmp_path / "run"
    VQGANModel(VQGANConfig(**TINY_VQGAN)).save_pretrained(old)  # an earlier run's model ...
    (old / "checkpoint-4").mkdir()  # ... its checkpoint and logs
    (old / "checkpoint-4" / "checkpoint_complete.json").write_text("{}")
    (old / "logs").mkdir()
    (old / "logs" / "events").write_text("curves")
    before = snapshot(old)
    capsys.readouterr()
    argv = ["train", *flags(old, images, "--overwrite-output-dir"), *mistake]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-vq train: error: ") and len(err.splitlines()) == 1
    assert snapshot(old) == before


def test_overwrite_clears_the_old_run_once_the_new_one_is_valid(tmp_path, images):
    old = tmp_path / "run"
    VQGANModel(VQGANConfig(**TINY_VQGAN)).save_pretrained(old)
    (old / "checkpoint-4").mkdir()
    (old / "checkpoint-4" / "checkpoint_complete.json").write_text("{}")
    assert train(parse_args(flags(old, images, "--overwrite-output-dir"))) == 0
    assert [p.name for p in list_checkpoints(old)] == ["checkpoint-1", "checkpoint-2"]
    assert json.loads((old / "config.json").read_text())["model_type"] == "hf_vq_vqvae"


# ------------------------------------------------------------------------------------------------ checkpoints


def test_a_kill_while_rotating_checkpoints_never_leaves_one_that_looks_complete(tmp_path, images, monkeypatch):
    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        if Path(path).name == "checkpoint-1":  # the rotation's delete: one file goes, then the process dies
            (Path(path) / "model" / "model.safetensors").unlink()
            raise Killed
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(Killed):
        train(parse_args(flags(tmp_path / "run", images, "--checkpoints-total-limit", "1")))
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    # The half-deleted folder lost its marker first: never taken for a checkpoint, and the next start removes it.
    assert (tmp_path / "run" / "checkpoint-1").is_dir()
    assert list_checkpoints(tmp_path / "run") == [tmp_path / "run" / "checkpoint-2"]
    resumed = flags(tmp_path / "run", images, "--resume-from-checkpoint", "latest", "--max-train-steps", "3")
    assert train(parse_args(resumed)) == 0
    assert not (tmp_path / "run" / "checkpoint-1").exists()


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_leaves_no_tmp(
    tmp_path, images, monkeypatch, caplog
):
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        if "checkpoint-2.tmp" in str(f):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    run = tmp_path / "run"
    with caplog.at_level(logging.ERROR, logger="hf_vq.training.loop"):
        assert train(parse_args(flags(run, images, "--max-train-steps", "3", "--checkpoints-total-limit", "3"))) == 1
    err = caplog.text  # the stop message is logged (stderr under the CLI)
    assert (
        f"Could not write checkpoint {run / 'checkpoint-2'} (the disk is full); the partial folder was removed" in err
    )
    assert f"Last complete checkpoint: {run / 'checkpoint-1'}" in err and "--resume-from-checkpoint latest" in err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-1"]  # no .tmp, no final model
    assert json.loads((run / "checkpoint-1" / "training_state.json").read_text())["global_step"] == 1
    monkeypatch.setattr(torch, "save", real_save)
    assert train(parse_args(flags(run, images, "--max-train-steps", "3", "--resume-from-checkpoint", "latest"))) == 0


def test_the_final_save_leaves_the_old_model_or_the_new_one(tmp_path, images, monkeypatch, capsys):
    import transformers.modeling_utils

    run = tmp_path / "run"
    assert train(parse_args(flags(run, images))) == 0
    old_model = {k: v for k, v in snapshot(run).items() if "/" not in k}  # the top level: the final model
    real_write = transformers.modeling_utils.safe_save_file
    more = flags(run, images, "--resume-from-checkpoint", "latest", "--max-train-steps", "3")

    def disk_full(tensors, filename, *args, **kwargs):
        if ".final-save" in str(filename):  # the checkpoints before it are written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", disk_full)
    assert main(["train", *more]) == 2  # disk full while writing the new weights
    assert "Could not write the final model into" in capsys.readouterr().err
    assert {k: v for k, v in snapshot(run).items() if "/" not in k} == old_model
    assert not (run / ".final-save.tmp").exists()

    def killed(tensors, filename, *args, **kwargs):  # config.json is written by then: the half model
        if ".final-save" in str(filename):
            raise Killed
        return real_write(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", killed)
    with pytest.raises(Killed):
        train(parse_args(more))
    assert {k: v for k, v in snapshot(run).items() if "/" not in k} == old_model
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", real_write)
    assert train(parse_args(more)) == 0
    assert not (run / ".final-save.tmp").exists() and not (run / ".final-save.ready").exists()
    new, ema = load_file(run / "model.safetensors"), load_file(run / "checkpoint-3" / "ema" / "model.safetensors")
    assert all(torch.equal(new[k], ema[k]) for k in new)  # the new model, whole


def test_a_final_save_killed_after_its_commit_point_is_finished_at_the_next_start(tmp_path):
    from accelerate import Accelerator

    from hf_vq.training.checkpointing import prepare_output_dir

    run = tmp_path / "run"
    VQGANModel(VQGANConfig(**TINY_VQGAN)).save_pretrained(run)  # the old model
    ready = run / ".final-save.ready"  # a kill after the commit rename: the new weights already moved in ...
    VQGANModel(VQGANConfig(**TINY_VQGAN, scaling_factor=0.5)).save_pretrained(ready)
    os.replace(ready / "model.safetensors", run / "model.safetensors")
    (ready / "discriminator").mkdir()
    (ready / "discriminator" / "config.json").write_text("{}")
    (run / ".final-save.tmp").mkdir()  # ... and an older, uncommitted staging folder
    args = parse_args(["--output-dir", str(run), "--resume-from-checkpoint", "latest"])
    prepare_output_dir(args, Accelerator(cpu=True))
    assert VQGANModel.from_pretrained(run).config.scaling_factor == 0.5  # ... the rest followed: the new model
    assert (run / "discriminator" / "config.json").is_file()
    assert not ready.exists() and not (run / ".final-save.tmp").exists()


# ------------------------------------------------------------------------------------------------ data


def test_empty_batches_are_skipped_data_not_failed_steps(tmp_path):
    images = write_images(tmp_path / "images", good=2, bad=2)
    run = tmp_path / "run"
    argv = flags(run, images, "--train-batch-size", "1", "--max-train-steps", "3", "--checkpointing-steps", "3")
    assert train(parse_args([*argv, "--max-consecutive-nonfinite", "1", "--max-empty-batches", "5"])) == 0
    state = json.loads((run / "checkpoint-3" / "training_state.json").read_text())
    assert state["nonfinite_steps"] == 0 and state["global_step"] == 3
    assert state["empty_batches"] == state["skipped_records"] >= 2  # each empty batch held one unreadable record


def test_a_window_of_unreadable_batches_stops_naming_the_data_source(tmp_path, caplog):
    images = write_images(tmp_path / "images", good=0, bad=4)
    run = tmp_path / "run"
    with caplog.at_level(logging.ERROR, logger="hf_vq.training.loop"):
        assert train(parse_args(flags(run, images, "--max-empty-batches", "3"))) == 1
    err = caplog.text
    assert f"3 batches in a row held no readable example in {images} (train)" in err
    assert "non-finite" not in err and "learning-rate" not in err  # a data problem, not a diverged run
    assert not (run / "config.json").exists()


def test_a_shard_that_fails_mid_run_stops_it_and_says_why(tmp_path, caplog):
    import pyarrow.parquet as pq

    shard = write_image_parquet_shards(tmp_path, num_images=8, step=20)[1]
    offset = pq.read_metadata(shard).row_group(0).column(0).data_page_offset
    data = bytearray(shard.read_bytes())
    data[offset : offset + 8] = b"\xff" * 8  # a damaged page: the footer reads, the page does not
    shard.write_bytes(bytes(data))
    run = tmp_path / "run"
    with caplog.at_level(logging.ERROR, logger="hf_vq.training.loop"):
        assert train(parse_args(flags(run, tmp_path / "data", "--max-train-steps", "10"))) == 1
    err = caplog.text
    assert f"Reading the training data ({tmp_path / 'data'} (train)) failed" in err
    assert "stops the run rather than being skipped" in err and not (run / "config.json").exists()


# ------------------------------------------------------------------------------------------------ resume


def test_resume_latest_in_an_empty_folder_says_no_checkpoint_was_found(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_resume_checkpoint("latest", tmp_path) is None
    assert f"no checkpoint found in {tmp_path}; starting from step 0" in caplog.text


def test_resuming_with_a_smaller_budget_says_so(tmp_path, images, caplog):
    run = tmp_path / "run"
    assert train(parse_args(flags(run, images))) == 0
    (run / "config.json").unlink()  # a run killed after its last checkpoint, before its final save
    with caplog.at_level(logging.WARNING):
        assert (
            train(parse_args(flags(run, images, "--resume-from-checkpoint", "latest", "--max-train-steps", "1"))) == 0
        )
    assert f"{run / 'checkpoint-2'} is at step 2, past --max-train-steps 1: nothing is trained" in caplog.text
    assert json.loads((run / "training_args.json").read_text())["max_train_steps"] == 1  # what the user gave


# ------------------------------------------------------------------------------------------------ security


class Payload:
    """A pickle that creates a folder when unpickled: proof that code ran."""

    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return os.mkdir, (str(self.proof),)


def test_resume_never_unpickles_a_foreign_checkpoint(tmp_path, images, capsys):
    run = tmp_path / "run"
    assert train(parse_args(flags(run, images))) == 0
    checkpoint, proof = run / "checkpoint-2", tmp_path / "code-ran"
    assert not list(checkpoint.glob("custom_checkpoint_*.pkl"))  # hf-vq's own state is JSON / safetensors
    resume = ["train", *flags(run, images, "--resume-from-checkpoint", str(checkpoint), "--max-train-steps", "3")]

    before = snapshot(run)
    if os.geteuid() == 0:  # root can fake a folder that another user wrote
        os.chown(checkpoint, 12345, 12345)
        assert main(resume) == 2
        err = capsys.readouterr().err
        assert "belongs to another user (uid 12345" in err and "add --trust-checkpoint if you trust" in err
        assert snapshot(run) == before
    for name in ("random_states_0.pkl", "optimizer.bin"):  # crafted files, even from a folder the user trusts
        saved = (checkpoint / name).read_bytes()
        (checkpoint / name).write_bytes(pickle.dumps(Payload(proof), protocol=2))
        assert main([*resume, "--trust-checkpoint"]) == 2
        assert "weights_only" in capsys.readouterr().err.replace("weights_only=True", "weights_only")
        assert not proof.exists()
        (checkpoint / name).write_bytes(saved)
    assert snapshot(run) == before


def test_checkpoints_of_earlier_versions_still_resume_without_unpickling(tmp_path, images, capsys):
    """Before #17 the loop's state was `custom_checkpoint_0.pkl`: read with weights_only=True, it resumes; a crafted
    one is refused."""
    run = tmp_path / "run"
    assert train(parse_args(flags(run, images))) == 0
    checkpoint = run / "checkpoint-2"
    state = json.loads((checkpoint / "training_state.json").read_text())
    (checkpoint / "training_state.json").unlink()
    torch.save(state, checkpoint / "custom_checkpoint_0.pkl")
    resume = flags(run, images, "--resume-from-checkpoint", "latest", "--max-train-steps", "3")
    assert train(parse_args(resume)) == 0
    assert json.loads((run / "checkpoint-3" / "training_state.json").read_text())["global_step"] == 3

    legacy = run / "checkpoint-3"
    (legacy / "training_state.json").unlink()
    (legacy / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "code-ran"), protocol=2))
    assert main(["train", *resume[:-1], "4"]) == 2
    assert "cannot be read with torch.load(weights_only=True)" in capsys.readouterr().err
    assert not (tmp_path / "code-ran").exists()


def test_checkpoints_and_the_final_model_follow_the_umask(tmp_path, images):
    """safetensors writes owner-only files; under a umask of 022 every weights file of a run (the checkpoints
    accelerate writes, the final model) is 0644 like the folder's other files, so a teammate can load it."""
    run = tmp_path / "run"
    previous = os.umask(0o022)
    try:
        assert train(parse_args(flags(run, images))) == 0
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in run.rglob("*.safetensors")}
    assert "model.safetensors" in modes and any(name.startswith("checkpoint-") for name in modes), modes
    assert set(modes.values()) == {"0o644"}, modes


def test_a_damaged_training_state_is_named_and_nothing_changes(tmp_path, images, capsys):
    run = tmp_path / "run"
    assert train(parse_args(flags(run, images))) == 0
    (run / "checkpoint-2" / "training_state.json").write_bytes(b"\xff\xfe not json")
    before = snapshot(run)
    assert main(["train", *flags(run, images, "--resume-from-checkpoint", "latest", "--max-train-steps", "3")]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'checkpoint-2' / 'training_state.json'} is damaged (UnicodeDecodeError" in err
    assert "--resume-from-checkpoint" in err and "Traceback" not in err
    assert snapshot(run) == before
