"""Sharded `hf-vq train-prior` (FSDP2, `hf_vq/training/sharding.py`) on two CPU processes with gloo, each given the
environment that `accelerate launch --use_fsdp --fsdp_version 2` computes (the ranks are forked from this process:
`helpers.ranks`). One run is killed with SIGKILL while it writes the
checkpoint of step 4, then resumed: the resumed run recomputes that checkpoint bit for bit (model and AdamW shards),
ends within fp tolerance of the same training on one process, and leaves a normal, unsharded pipeline folder. A
sharded checkpoint whose pickled metadata names anything else than DCP's own classes is refused before torch reads
it."""

import os
import pickle
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vq.commands.train_prior import main as train_prior_main
from hf_vq.training.sharding import check_sharded_checkpoint

from helpers import save_tokenizer, tiny_prior_flags, write_token_set
from helpers.ranks import run_job

pytest.importorskip("diffusers")

FSDP2 = ("--use_fsdp", "--fsdp_version", "2")
# 6 steps, checkpoints at 2, 4, 6; no EMA (refused with FSDP) and no class dropout (its draws follow the batch size,
# which differs between one process of 8 and two of 4).
RUN = ("--use-ema", "false", "--class-dropout-prob", "0", "--checkpointing-steps", "2", "--report-to", "none")
RUN += ("--learning-rate", "1e-3", "--lr-warmup-steps", "0")  # steps that move the weights well past fp noise


def die_while_saving_step_4() -> None:
    """Once every rank has written its shards into `checkpoint-4.tmp`, and before the checkpoint is marked complete
    and renamed, the rank sends itself SIGKILL, as a `kill -9` of the job would."""
    from accelerate import Accelerator

    save_state = Accelerator.save_state

    def save_then_die(self, output_dir=None, **kwargs):
        result = save_state(self, output_dir, **kwargs)
        if str(output_dir).endswith("checkpoint-4.tmp"):
            self.wait_for_everyone()  # both ranks' shards are on disk, the marker is not
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Accelerator.save_state = save_then_die


def dcp_tensors(folder: Path) -> dict:
    """A torch.distributed.checkpoint folder (every rank's shards) as one dict of whole tensors."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    path = folder.with_suffix(".pt")
    dcp_to_torch_save(str(folder), str(path))
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        elif isinstance(value, torch.Tensor):
            flat[prefix] = value

    walk("", torch.load(path, weights_only=True))
    return flat


@pytest.mark.slow  # two 2-process runs and a one-process run
def test_sharded_run_killed_mid_checkpoint_resumes_exactly_and_matches_one_process(tmp_path):
    from hf_vq.pipelines import VQImagePipeline

    tokenizer = save_tokenizer(tmp_path / "tok")
    write_token_set(tmp_path / "tokens", tokenizer, tmp_path / "tok")
    sharded = tmp_path / "sharded"
    # Two processes of 4 sequences each: the same 8 per step as one process of 8 (accelerate's sharded sampler).
    argv = ["train-prior", *tiny_prior_flags(tmp_path / "tokens", sharded, *RUN), "--train-batch-size", "4"]
    killed = run_job(tmp_path, argv, faults=(die_while_saving_step_4,) * 2, launch_flags=FSDP2, deadline=120)
    assert killed[0] == [-signal.SIGKILL] * 2, "\n".join(killed[1])
    # The kill left the checkpoint of step 2 and an unfinished one of step 4, never taken for a checkpoint.
    assert (sharded / "checkpoint-2" / "checkpoint_complete.json").is_file()
    partial = sharded / "checkpoint-4.tmp"
    assert not (sharded / "checkpoint-4").exists() and not (partial / "checkpoint_complete.json").exists()
    # Sharded: each rank's part of the weights and of AdamW's state; the model folder holds its config only.
    for name in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert {p.name for p in (partial / name).glob("*.distcp")} == {"__0_0.distcp", "__1_0.distcp"}
    assert {p.name for p in (partial / "transformer").iterdir()} == {"config.json"}
    shutil.copytree(partial, tmp_path / "killed-at-4")  # the resume clears what the kill left

    resumed = run_job(tmp_path, [*argv, "--resume-from-checkpoint", "latest"], launch_flags=FSDP2, deadline=120)
    assert resumed[0] == [0, 0], "\n".join(text[-3000:] for text in resumed[1])
    assert not partial.exists()
    # From checkpoint 2, the resumed run reaches step 4 with the very state the killed run had written.
    for name in ("pytorch_model_fsdp_0", "optimizer_0"):
        expected, again = dcp_tensors(tmp_path / "killed-at-4" / name), dcp_tensors(sharded / "checkpoint-4" / name)
        assert expected.keys() == again.keys() and len(expected) > 10, name
        assert all(torch.equal(expected[k], again[k]) for k in expected), name

    # The final folder is a normal pipeline: one unsharded safetensors file, loaded and sampled anywhere.
    pipe = VQImagePipeline.from_pretrained(sharded)
    assert pipe(class_labels=["right"], output_type="np").images.shape == (1, 16, 16, 3)
    assert {p.name for p in (sharded / "samples").iterdir()} == {"step-0000003.png", "step-0000006.png"}
    # The same training on one process: the same weights, up to the order of floating-point sums.
    single = tmp_path / "single"
    assert train_prior_main([*tiny_prior_flags(tmp_path / "tokens", single, *RUN), "--train-batch-size", "8"]) == 0
    one, two = (
        load_file(single / "transformer/model.safetensors"),
        load_file(sharded / "transformer/model.safetensors"),
    )
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    # Not vacuous: steps 5 and 6 alone moved the weights far more than that tolerance.
    at_4 = load_file(single / "checkpoint-4/transformer/model.safetensors")
    moved = max(float((one[k] - at_4[k]).abs().max()) for k in one)
    assert moved > 5e-4, moved  # 50 times the tolerance


def test_a_sharded_checkpoint_with_foreign_pickled_metadata_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    good = tmp_path / "good" / "pytorch_model_fsdp_0"
    good.mkdir(parents=True)
    from torch.distributed.checkpoint.metadata import Metadata, TensorProperties

    (good / ".metadata").write_bytes(pickle.dumps(Metadata({"w": TensorProperties(dtype=torch.float32)})))
    check_sharded_checkpoint(tmp_path / "good")  # DCP's own classes pass
    bad = tmp_path / "bad" / "optimizer_0"
    bad.mkdir(parents=True)
    (bad / ".metadata").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not the metadata of a sharded checkpoint that hf-vq can read safely"):
        check_sharded_checkpoint(tmp_path / "bad")
    assert not (tmp_path / "ran").exists()
