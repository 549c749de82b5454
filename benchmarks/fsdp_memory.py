"""What sharding buys: per-process memory of a prior's parameters, gradients and AdamW states when `hf-vq
train-prior` runs on 2 processes under FSDP2 (`accelerate launch --use_fsdp --fsdp_version 2`) against 1 process
(issue #24; expected: about half).

Each case runs in fresh processes that build the run as `hf-vq train-prior` does: the loop's accelerator and
`configure_sharding` (`hf_vq.training.loop.build_accelerator`, `hf_vq.training.sharding`), its AdamW
(`build_optimizers`), `accelerator.prepare`, then a few training steps of a class-conditional prior on random ids
through the loop's `train_step` / `optimizer_step`. Measured on every process:

- parameters, gradients (after a backward) and optimizer states: the bytes of the tensors the process holds (a
  DTensor counts its local shard), the exact figure sharding divides;
- peak resident memory during the steps (`VmHWM`, reset after `prepare`): the same plus activations, the all-gathered
  layer being computed, the allocator's slack and the libraries.

    python benchmarks/fsdp_memory.py                     # 2-core CPU: gloo, the CPU path of sharding.py
    python benchmarks/fsdp_memory.py --hidden-size 1024 --layers 16  # on GPUs it runs the same, one process per GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 2**20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--codebook-size", type=int, default=16384, help="image vocabulary (LlamaGen's VQ-16)")
    parser.add_argument("--grid", type=int, default=16, help="token grid side (16: a 256 px image at f16)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=2, help="sequences per process and step")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--note", default="", help="a line for the result (e.g. that the cores were shared)")
    parser.add_argument("--output", default=str(RESULTS / "fsdp_memory.md"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a JSON file to write this rank's figures
    return parser.parse_args(argv)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _local_bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor

    total = 0
    for tensor in tensors:
        local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        total += local.numel() * local.element_size()
    return total


def worker(args) -> None:
    """One process of a case: the run built as train-prior builds it, a few steps, this rank's figures."""
    from hf_vq.modeling import VQPriorConfig, VQPriorForCausalLM
    from hf_vq.training.loop import build_accelerator, build_optimizers
    from hf_vq.training.prior_arguments import parse_prior_args
    from hf_vq.training.sharding import configure_sharding
    from hf_vq.training.step import optimizer_step
    from hf_vq.training.task import Trainable

    folder = tempfile.mkdtemp(prefix="fsdp-memory-")
    flags = ["--tokens", "unused", "--output-dir", folder, "--use-ema", "false", "--report-to", "none"]
    run_args = parse_prior_args([*flags, "--max-train-steps", str(args.steps)])
    accelerator = build_accelerator(run_args)
    configure_sharding(accelerator, run_args)
    torch.manual_seed(0)
    config = VQPriorConfig(
        token_levels=[{"name": "tokens", "downsampling_factor": 16, "codebook_size": args.codebook_size}],
        image_size=16 * args.grid,
        num_classes=args.num_classes,
        hidden_size=args.hidden_size,
        intermediate_size=3 * args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        position_embedding="rope+2d",
    )
    model = VQPriorForCausalLM(config).train()
    num_parameters = sum(p.numel() for p in model.parameters())
    trainables = [Trainable("prior", model, run_args.learning_rate)]
    optimizers, _ = build_optimizers(run_args, trainables, args.steps, accelerator.num_processes, "cpu")
    model, optimizer = accelerator.prepare(model, optimizers[0])
    with open("/proc/self/clear_refs", "w") as clear_refs:  # the high-water mark from here on
        clear_refs.write("5")
    baseline = _status_kib("VmRSS")
    generator = torch.Generator().manual_seed(accelerator.process_index)
    gradients = 0
    for _ in range(args.steps):
        ids = torch.randint(0, args.codebook_size, (args.batch_size, 1 + args.grid**2), generator=generator)
        ids[:, 0] = args.codebook_size  # class 0
        loss = model(input_ids=ids, labels=ids).loss
        accelerator.backward(loss)
        gradients = _local_bytes(p.grad for p in model.parameters() if p.grad is not None)
        optimizer_step(accelerator, run_args, {"prior": model}, [optimizer], [], True)
    states = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    figures = {
        "rank": accelerator.process_index,
        "processes": accelerator.num_processes,
        "sharded": accelerator.distributed_type.value,
        "num_parameters": num_parameters,
        "parameters": _local_bytes(model.parameters()),
        "gradients": gradients,
        "optimizer": _local_bytes(states),
        "peak_rss_during_steps": (_status_kib("VmHWM") - baseline) * 1024,
        "loss": float(loss.detach()),
    }
    Path(args.worker).with_suffix(f".{accelerator.process_index}.json").write_text(json.dumps(figures))
    accelerator.end_training()


def run_case(args, processes: int, folder: Path) -> list[dict]:
    script = [str(Path(__file__).resolve()), "--worker", str(folder / f"case{processes}")]
    for flag in ("hidden_size", "layers", "codebook_size", "grid", "num_classes", "batch_size", "steps"):
        script += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if processes == 1:
        command = [sys.executable, *script]
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = str(probe.getsockname()[1])
        command = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2"]
        command += ["--num_processes", str(processes), "--num_machines", "1", "--dynamo_backend", "no"]
        command += ["--mixed_precision", "no", "--main_process_port", port, *script]
        if not torch.cuda.is_available():
            env["ACCELERATE_USE_CPU"] = "1"
    subprocess.run(command, check=True, env=env)
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"case{processes}.*.json"))]


def markdown(args, one: list[dict], two: list[dict]) -> str:
    rows = ["| | 1 process | 2 processes (FSDP2), per rank | ratio |", "|---|---:|---:|---:|"]
    for key, label in (("parameters", "parameters"), ("gradients", "gradients"), ("optimizer", "AdamW states")):
        single, shards = one[0][key] / MIB, [r[key] / MIB for r in two]
        rows.append(
            f"| {label} | {single:.1f} MiB | {' / '.join(f'{s:.1f}' for s in shards)} MiB | "
            f"{max(shards) / single:.3f} |"
        )
    total = ("parameters", "gradients", "optimizer")
    single, shards = sum(one[0][k] for k in total) / MIB, [sum(r[k] for k in total) / MIB for r in two]
    rows.append(
        f"| **parameters + gradients + AdamW** | {single:.1f} MiB | {' / '.join(f'{s:.1f}' for s in shards)} MiB | "
        f"**{max(shards) / single:.3f}** |"
    )
    single, shards = one[0]["peak_rss_during_steps"] / MIB, [r["peak_rss_during_steps"] / MIB for r in two]
    rows.append(
        f"| peak resident memory during the steps (above the start) | {single:.0f} MiB | "
        f"{' / '.join(f'{s:.0f}' for s in shards)} MiB | {max(shards) / single:.3f} |"
    )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "2-core CPU VM, gloo"
    millions = one[0]["num_parameters"] / 1e6
    note = f"; {args.note}" if args.note else ""
    return f"""# FSDP2: per-process memory of a sharded prior, 2 processes against 1

- date: {datetime.date.today()}; hardware: {device}; torch {torch.__version__}, {platform.python_version()}{note}
- command: `python benchmarks/fsdp_memory.py {" ".join(sys.argv[1:])}`
- prior: `VQPriorForCausalLM`, {args.layers} layers x {args.hidden_size}, {args.codebook_size} image ids + \
{args.num_classes} classes, {args.grid}x{args.grid} grid ({millions:.1f}M parameters, fp32); AdamW (fused); \
{args.steps} steps of {args.batch_size} sequences per process
- 2 processes: `accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2`, the decoder layers auto-wrapped \
(hf-vq's default), the embedding and the head their own units, as accelerate's FSDP2 plugin shards a transformers \
model

{chr(10).join(rows)}

Parameters, gradients and AdamW states are the bytes of the tensors each process holds (a DTensor's local shard),
after the last step (gradients: after the last backward). FSDP2 splits every tensor along its first dimension
across the processes, so each holds half, to within one row. The resident-memory row also counts what a step
allocates besides those tensors: activations, each unit's weights all-gathered for its forward and backward, its
full gradient before the reduce-scatter, the communication buffers (gloo's, on CPU) and allocator slack. None of
that is divided by sharding, and at this size on CPU it outweighs what sharding saves (the row's ratio above 1); it
was not broken down further. The tensor rows are the figure that scales with the model.
"""


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="fsdp-memory-") as folder:
        one = run_case(args, 1, Path(folder))
        two = run_case(args, 2, Path(folder))
    assert one[0]["sharded"] != "FSDP" and {r["sharded"] for r in two} == {"FSDP"}, (one, two)
    text = markdown(args, one, two)
    print(text)
    Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
