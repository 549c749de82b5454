"""A 2-process `hf-vq` job on CPU (gloo) whose ranks are forked from the test process.

An `accelerate launch` spends ~10 s of CPU per process importing torch, transformers and diffusers before the first
step; a forked rank starts with everything the test process has imported. Each rank gets the environment that
accelerate's own launcher computes for the same `accelerate launch` flags (`prepare_multi_gpu_env`), plus what torchrun
would add (`RANK`, `WORLD_SIZE`, ...), then runs `hf_vq.cli.main(argv)` as the launched command would.
`tests/test_training_cli.py` keeps one real `accelerate launch` of two processes.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

WORLD_SIZE = 2


def free_port() -> int:
    """A free local port: other tests may run a process group at the same time (xdist)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher_env(launch_flags: Sequence[str], port: int) -> dict[str, str]:
    """The variables `accelerate launch LAUNCH_FLAGS --num_processes 2` sets for its ranks, computed by accelerate's
    launcher itself (the parts of it that do not start processes)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    flags = [*launch_flags] if "--mixed_precision" in launch_flags else [*launch_flags, "--mixed_precision", "no"]
    flags += ["--num_processes", str(WORLD_SIZE), "--num_machines", "1", "--main_process_port", str(port)]
    args = launch_command_parser().parse_args([*flags, "--dynamo_backend", "no", "hf-vq"])
    _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    return {key: value for key, value in env.items() if os.environ.get(key) != value}


def run_rank(rank: int, env: dict[str, str], argv: list[str], log: str, fault, deadline: float) -> None:
    """One rank, in a forked child: the launcher's environment, fresh accelerate state and logging, stdout and stderr
    to `log`, then `fault()` if given; exits with `hf-vq`'s status."""
    status = 3
    try:
        os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE))
        os.environ.update(LOCAL_WORLD_SIZE=str(WORLD_SIZE), MASTER_ADDR="127.0.0.1", ACCELERATE_USE_CPU="1")
        os.environ.update(OMP_NUM_THREADS="1")
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
            faulthandler.dump_traceback_later(deadline - 5, file=stream)  # where a rank waits, should one hang

            from hf_vq.cli import main

            status = main(argv)
    finally:
        os._exit(status)


def run_job(
    tmp_path: Path,
    argv: list[str],
    faults: tuple[Callable[[], None] | None, ...] = (None, None),
    launch_flags: Sequence[str] = (),
    deadline: float = 60,
) -> tuple[list[int], list[str], float]:
    """Both ranks of `hf-vq ARGV` as `accelerate launch LAUNCH_FLAGS` would start them (`faults`: what each rank
    injects first); their exit statuses (-9 for a rank killed by SIGKILL), what each printed, and the seconds until
    both ended. A rank still running after `deadline` seconds fails the test with every rank's output."""
    port = free_port()
    env = {**launcher_env(launch_flags, port), "MASTER_PORT": str(port)}
    logs = [str(tmp_path / f"rank{rank}.log") for rank in range(WORLD_SIZE)]
    context = multiprocessing.get_context("fork")
    start = time.perf_counter()
    ranks = [
        context.Process(target=run_rank, args=(rank, env, argv, logs[rank], faults[rank], deadline))
        for rank in range(WORLD_SIZE)
    ]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=max(1.0, deadline - (time.perf_counter() - start)))
    seconds = time.perf_counter() - start
    hung = [process for process in ranks if process.is_alive()]
    for process in hung:
        process.kill()
        process.join()
    texts = [Path(log).read_text() for log in logs]
    assert not hung, f"a rank was still running after {deadline} s:\n" + "\n".join(t[-2000:] for t in texts)
    return [process.exitcode for process in ranks], texts, seconds
