"""Two CPU processes (gloo) train EMA codebooks on different data and must end with identical codebooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "scripts" / "ema_sync.py"


@pytest.mark.slow  # two torch.distributed processes: ~16 s
def test_two_processes_end_with_identical_codebooks(tmp_path):
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
        str(SCRIPT), str(tmp_path),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert rank0["world_size"] == 2 and rank0["distributed"] and rank1["distributed"]
    assert not torch.equal(rank0["data"][0], rank1["data"][0])  # the ranks really saw different data

    for name in ("ema_only", "everything"):
        for key, value in rank0[name].items():
            assert torch.equal(value, rank1[name][key]), f"{name}: {key} differs between ranks"
    assert int(rank0["everything"]["kmeans_done"]) == 1
    assert int(rank0["ema_only"]["usage_step"]) == 5

    # The all-reduced EMA equals one process seeing both ranks' batches at once.
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import ema_sync
    finally:
        sys.path.remove(str(SCRIPT.parent))
    reference = ema_sync.build(ema_sync.EMA_ONLY)
    with torch.no_grad():
        for step in range(ema_sync.STEPS):
            reference(torch.cat([rank0["data"][step], rank1["data"][step]]), return_dict=True)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(rank0["ema_only"][key], value, msg=key)
    # and differs from what rank 0 alone would have learned
    alone = ema_sync.build(ema_sync.EMA_ONLY)
    with torch.no_grad():
        for step in range(ema_sync.STEPS):
            alone(rank0["data"][step], return_dict=True)
    assert not torch.allclose(alone.embedding.weight, rank0["ema_only"]["embedding.weight"])
