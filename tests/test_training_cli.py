"""`hf-vq train` run as a user runs it: a subprocess on the built-in photos, a resume, a 2-process launch."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import TINY_DISCRIMINATOR
from helpers import TINY_VQGAN as TINY_MODEL

pytestmark = pytest.mark.slow
REPO_ROOT = str(Path(__file__).resolve().parents[1])

CHECKPOINT_FILES = {
    "checkpoint_complete.json",
    "training_state.json",  # the loop's state as JSON, not a pickle (#17)
    "discriminator",
    "ema",
    "model",
    "optimizer.bin",
    "optimizer_1.bin",
    "random_states_0.pkl",
    "scheduler.bin",
    "scheduler_1.bin",
}


def run(argv, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO_ROOT}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def train_flags(output_dir, *extra):
    return [
        "--output-dir", str(output_dir),
        "--model-config", json.dumps(TINY_MODEL),
        "--discriminator-config", json.dumps(TINY_DISCRIMINATOR),
        "--resolution", "32", "--train-batch-size", "2", "--num-eval-images", "4",
        "--max-train-steps", "6", "--checkpointing-steps", "2", "--checkpoints-total-limit", "2",
        "--image-logging-steps", "3", "--eval-steps", "3", "--logging-steps", "1",
        "--lr-warmup-steps", "1", "--seed", "3",
        *extra,
    ]  # fmt: skip


def weights(path):
    return load_file(str(path))


def test_cli_end_to_end_then_a_killed_run_resumes_to_identical_weights(tmp_path):
    first = tmp_path / "first"
    result = run([sys.executable, "-m", "hf_vq.cli", "train", *train_flags(first)])
    assert f"Model (with model card README.md): {first}" in result.stdout
    assert f"tensorboard --logdir {first / 'logs'}" in result.stdout

    # The output folder, exactly: the final model at the top, rotated checkpoints, samples, logs.
    assert {p.name for p in first.iterdir()} == {
        "README.md", "card_info.json", "config.json", "model.safetensors", "samples.png", "training_args.json",
        "discriminator", "checkpoint-4", "checkpoint-6", "logs", "samples",
    }  # fmt: skip
    for checkpoint in ("checkpoint-4", "checkpoint-6"):
        assert {p.name for p in (first / checkpoint).iterdir()} == CHECKPOINT_FILES
    assert {p.name for p in (first / "samples").iterdir()} == {"step-0000003.png", "step-0000006.png"}
    assert any(name.startswith("events.out.tfevents") for _, _, files in os.walk(first / "logs") for name in files)

    from hf_vq import VQGANModel
    from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator

    model = VQGANModel.from_pretrained(first).eval()
    assert model.encode_to_indices(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 16)
    VQGANDiscriminator.from_pretrained(first / "discriminator")
    card = (first / "README.md").read_text()
    assert "samples.png" in card and "built-in photos" in card
    # The saved model is the EMA, not the raw weights of the last step.
    ema, raw = weights(first / "checkpoint-6" / "ema" / "model.safetensors"), weights(first / "checkpoint-6" / "model" / "model.safetensors")
    final = weights(first / "model.safetensors")
    assert all(torch.equal(final[k], ema[k]) for k in final) and any(not torch.equal(ema[k], raw[k]) for k in ema)

    # A run killed after checkpoint-4, while writing checkpoint-6: what it leaves behind.
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "checkpoint-4", second / "checkpoint-4")
    shutil.copytree(first / "checkpoint-6", second / "checkpoint-6.tmp")
    (second / "checkpoint-6.tmp" / "checkpoint_complete.json").unlink()
    (second / "checkpoint-6.tmp" / "optimizer.bin").write_bytes(b"half-written")
    result = run([sys.executable, "-m", "hf_vq.cli", "train", *train_flags(second, "--resume-from-checkpoint", "latest")])
    assert "Resuming from " + str(second / "checkpoint-4") in result.stderr

    for name in ("model.safetensors", "discriminator/model.safetensors", "checkpoint-6/model/model.safetensors"):
        expected, resumed = weights(first / name), weights(second / name)
        assert expected.keys() == resumed.keys()
        assert all(torch.equal(expected[k], resumed[k]) for k in expected), name


DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from accelerate.utils import gather_object
    from hf_vq.training import parse_args
    from hf_vq.data import build_train_dataloader, build_train_stream
    from hf_vq.training.loop import build_accelerator
    from hf_vq.training.tokenizer import main

    data, out = sys.argv[1], sys.argv[2]
    args = parse_args(["--dataset-name", data, "--output-dir", out + "/probe", "--report-to", "none"])
    accelerator = build_accelerator(args)
    stream = build_train_stream(data, resolution=16, shuffle_buffer_size=4, seed=1)
    loader = accelerator.prepare(build_train_dataloader(stream, 2, 2, accelerator.num_processes))
    seen = []
    for batch in loader:
        levels = (batch["pixel_values"][:, 0, 0, 0] + 1) / 2 * 255 / 15
        seen += levels.round().long().tolist()
    everyone = gather_object([(accelerator.process_index, seen)])
    if accelerator.is_main_process:
        json.dump(everyone, open(out + "/seen.json", "w"))
    accelerator.wait_for_everyone()
    sys.exit(main(sys.argv[3:]))
    """
)


def test_two_process_cpu_run_sees_each_example_once_and_trains(tmp_path):
    import datasets
    from PIL import Image

    images = [Image.fromarray(np.full((24, 24, 3), 15 * i, dtype=np.uint8)) for i in range(16)]
    shards = datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image())
    (tmp_path / "data").mkdir()
    for shard in range(4):
        shards.shard(4, shard, contiguous=True).to_parquet(str(tmp_path / "data" / f"train-{shard}.parquet"))
    script = tmp_path / "probe.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    flags = train_flags(
        tmp_path / "run", "--dataset-name", str(tmp_path / "data"), "--max-train-steps", "2",
        "--checkpointing-steps", "2", "--dataloader-num-workers", "1", "--perceptual-weight", "0",
        "--discriminator-start", "0",
    )  # fmt: skip
    with socket.socket() as probe:  # a free port: other tests may run a process group at the same time (xdist)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--main_process_port", str(port)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO_ROOT}
    result = subprocess.run(
        [*launch, str(script), str(tmp_path / "data"), str(tmp_path), *flags],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    seen = dict(json.loads((tmp_path / "seen.json").read_text()))
    assert set(seen) == {0, 1}
    assert sorted(seen[0] + seen[1]) == list(range(16))  # every example once, on one rank only
    assert len(seen[0]) == len(seen[1]) == 8
    # The same launch trained: both ranks' data positions are in the checkpoint, the final model is saved.
    state = json.loads((tmp_path / "run" / "checkpoint-2" / "training_state.json").read_text())
    assert len(state["epochs"]) == 2 and state["images_seen"] == 2 * 2 * 2
    assert (tmp_path / "run" / "model.safetensors").is_file()
