"""`hf-vq train` run as a user runs it: a subprocess on the built-in photos, run again to resume a killed run, and
a 2-process launch that also checks the codebooks' all-reduce."""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_vq.cli import main as cli_main

from helpers import TINY_DISCRIMINATOR, free_port
from helpers import TINY_VQGAN as TINY_MODEL

pytestmark = pytest.mark.slow
REPO_ROOT = str(Path(__file__).resolve().parents[1])
SCRIPTS = Path(__file__).parent / "scripts"  # ema_sync.py, run on each rank of the two-process launch

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
    result = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def train_flags(output_dir, *extra):
    """The tiny run's flags; `output_dir` None leaves the main job's default folder."""
    return [
        *(["--output-dir", str(output_dir)] if output_dir is not None else []),
        "--model-config",
        json.dumps(TINY_MODEL),
        "--discriminator-config",
        json.dumps(TINY_DISCRIMINATOR),
        "--resolution",
        "32",
        "--train-batch-size",
        "2",
        "--num-eval-images",
        "4",
        "--max-train-steps",
        "6",
        "--checkpointing-steps",
        "2",
        "--checkpoints-total-limit",
        "2",
        "--image-logging-steps",
        "3",
        "--eval-steps",
        "3",
        "--logging-steps",
        "1",
        "--lr-warmup-steps",
        "1",
        "--seed",
        "3",
        "--discriminator-start",
        "3",  # the GAN half of the run: its discriminator is trained, saved and resumed
        *extra,
    ]


def weights(path):
    return load_file(str(path))


def assert_quiet_with_one_progress_bar(result):
    """What a newcomer sees on stderr: no wall of library warnings, and a progress bar that ends with its ETA and
    the training metrics."""
    assert not [line for line in result.stderr.splitlines() if "warn" in line.lower()]
    bars = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith("train: 100%")]
    assert bars and "<00:00" in bars[-1] and "codebook_usage=" in bars[-1]


def test_the_main_job_run_again_continues_a_killed_run_to_identical_weights_or_moves_on(
    tmp_path, monkeypatch, capsys, caplog
):
    """`hf-vq train` as a user runs it, in a fresh folder, without `--output-dir`, three times (#18): the first run
    leaves its output folder; run again over a killed copy of it, the same command continues the run and ends with
    the first run's weights; run again over the finished run, it moves on to `outputs/hf-vq-train-2`."""
    command = [sys.executable, "-m", "hf_vq.cli", "train", *train_flags(None)]
    first = run(command, cwd=tmp_path)
    output = tmp_path / "outputs" / "hf-vq-train"
    assert_quiet_with_one_progress_bar(first)
    # The summary is logged (stderr), like every other line of the run.
    assert "Model (with model card README.md): outputs/hf-vq-train\n" in first.stderr
    assert "tensorboard --logdir outputs/hf-vq-train/logs" in first.stderr

    # The output folder, exactly: the final model at the top, rotated checkpoints, samples, logs.
    assert {p.name for p in output.iterdir()} == {
        "README.md",
        "card_info.json",
        "config.json",
        "model.safetensors",
        "samples.png",
        "training_args.json",
        "discriminator",
        "checkpoint-4",
        "checkpoint-6",
        "logs",
        "samples",
    }
    for checkpoint in ("checkpoint-4", "checkpoint-6"):
        assert {p.name for p in (output / checkpoint).iterdir()} == CHECKPOINT_FILES
    assert {p.name for p in (output / "samples").iterdir()} == {"step-0000003.png", "step-0000006.png"}
    assert any(name.startswith("events.out.tfevents") for _, _, files in os.walk(output / "logs") for name in files)

    from hf_vq import VQGANModel
    from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator

    model = VQGANModel.from_pretrained(output).eval()
    assert model.encode_to_indices(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 16)
    VQGANDiscriminator.from_pretrained(output / "discriminator")
    card = (output / "README.md").read_text()
    assert "samples.png" in card and "built-in photos" in card
    # The saved model is the EMA, not the raw weights of the last step.
    ema = weights(output / "checkpoint-6" / "ema" / "model.safetensors")
    raw = weights(output / "checkpoint-6" / "model" / "model.safetensors")
    final = weights(output / "model.safetensors")
    assert all(torch.equal(final[k], ema[k]) for k in final) and any(not torch.equal(ema[k], raw[k]) for k in ema)

    # The run killed after checkpoint-4, while writing checkpoint-6: what it leaves behind. The finished run is
    # kept aside as the reference.
    reference = tmp_path / "reference"
    output.rename(reference)
    output.mkdir()
    shutil.copytree(reference / "checkpoint-4", output / "checkpoint-4")
    shutil.copytree(reference / "checkpoint-6", output / "checkpoint-6.tmp")
    (output / "checkpoint-6.tmp" / "checkpoint_complete.json").unlink()
    (output / "checkpoint-6.tmp" / "optimizer.bin").write_bytes(b"half-written")
    second = run(command, cwd=tmp_path)
    assert_quiet_with_one_progress_bar(second)
    assert "outputs/hf-vq-train holds an unfinished run of the same model: continuing it from checkpoint-4" in (
        second.stderr
    )
    assert "Resuming from outputs/hf-vq-train/checkpoint-4" in second.stderr
    assert "Model (with model card README.md): outputs/hf-vq-train\n" in second.stderr
    for name in ("model.safetensors", "discriminator/model.safetensors", "checkpoint-6/model/model.safetensors"):
        expected, resumed = weights(reference / name), weights(output / name)
        assert expected.keys() == resumed.keys()
        assert all(torch.equal(expected[k], resumed[k]) for k in expected), name

    # Run again over the finished run: a new folder, the finished one left as it is. In this process, one step
    # without LPIPS or loader workers: the subprocess runs above already showed what the command prints and leaves.
    finished = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    short = ["--max-train-steps", "1", "--perceptual-weight", "0", "--dataloader-num-workers", "0"]
    short += ["--report-to", "none"]
    with caplog.at_level(logging.INFO, logger="hf_vq.training.monitoring"):
        assert cli_main(["train", *train_flags(None), *short]) == 0
    err = capsys.readouterr().err
    assert "outputs/hf-vq-train holds a finished run: this run writes to outputs/hf-vq-train-2" in err
    summary = [r.getMessage() for r in caplog.records if r.name == "hf_vq.training.monitoring"]
    assert len(summary) == 1 and "Model (with model card README.md): outputs/hf-vq-train-2\n" in summary[0]
    assert (tmp_path / "outputs" / "hf-vq-train-2" / "model.safetensors").is_file()
    assert {p: p.read_bytes() for p in output.rglob("*") if p.is_file()} == finished


DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from accelerate.utils import gather_object
    from hf_vq.training import parse_args
    from hf_vq.data import build_train_dataloader, build_train_stream
    from hf_vq.training.loop import build_accelerator
    from hf_vq.commands.train import main

    import ema_sync

    data, out = sys.argv[1], sys.argv[2]
    # The codebooks' all-reduce (tests/scripts/ema_sync.py: it reads its output folder from the command line).
    command_line, sys.argv = sys.argv, [ema_sync.__file__, out]
    assert ema_sync.main() == 0
    sys.argv = command_line
    # The data: which examples each rank reads.
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
    # The training run itself.
    sys.exit(main(sys.argv[3:]))
    """
)


def test_two_cpu_processes_sync_codebooks_see_each_example_once_and_train(tmp_path):
    """One `accelerate launch` of two CPU processes (gloo), three checks: EMA codebooks trained on different data
    end identical on both ranks, the data loader gives each example to one rank only, and `hf-vq train` trains."""
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
        tmp_path / "run",
        "--dataset-name",
        str(tmp_path / "data"),
        "--max-train-steps",
        "2",
        "--checkpointing-steps",
        "2",
        "--dataloader-num-workers",
        "1",
        "--perceptual-weight",
        "0",
        "--discriminator-start",
        "0",
    )
    port = free_port()
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(port)]
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([REPO_ROOT, str(SCRIPTS)]),
    }
    result = subprocess.run(
        [*launch, str(script), str(tmp_path / "data"), str(tmp_path), *flags],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    # Codebooks: both ranks end with the same EMA statistics, k-means init and restarts, from different data.
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert rank0["world_size"] == 2 and rank0["distributed"] and rank1["distributed"]
    assert not torch.equal(rank0["data"][0], rank1["data"][0])  # the ranks really saw different data
    for name in ("ema_only", "everything"):
        for key, value in rank0[name].items():
            assert torch.equal(value, rank1[name][key]), f"{name}: {key} differs between ranks"
    assert int(rank0["everything"]["kmeans_done"]) == 1
    assert int(rank0["ema_only"]["usage_step"]) == 5
    # The all-reduced EMA equals one process seeing both ranks' batches at once ...
    sys.path.insert(0, str(SCRIPTS))
    try:
        import ema_sync
    finally:
        sys.path.remove(str(SCRIPTS))
    reference = ema_sync.build(ema_sync.EMA_ONLY)
    with torch.no_grad():
        for step in range(ema_sync.STEPS):
            reference(torch.cat([rank0["data"][step], rank1["data"][step]]), return_dict=True)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(rank0["ema_only"][key], value, msg=key)
    # ... and differs from what rank 0 alone would have learned.
    alone = ema_sync.build(ema_sync.EMA_ONLY)
    with torch.no_grad():
        for step in range(ema_sync.STEPS):
            alone(rank0["data"][step], return_dict=True)
    assert not torch.allclose(alone.embedding.weight, rank0["ema_only"]["embedding.weight"])

    # Data: every example once, on one rank only.
    seen = dict(json.loads((tmp_path / "seen.json").read_text()))
    assert set(seen) == {0, 1}
    assert sorted(seen[0] + seen[1]) == list(range(16))
    assert len(seen[0]) == len(seen[1]) == 8
    # Training: both ranks' data positions are in the checkpoint, the final model is saved.
    state = json.loads((tmp_path / "run" / "checkpoint-2" / "training_state.json").read_text())
    assert len(state["epochs"]) == 2 and state["images_seen"] == 2 * 2 * 2
    assert (tmp_path / "run" / "model.safetensors").is_file()
