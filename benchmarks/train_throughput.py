"""Training throughput of `hf-vq train`'s loop vs a bare diffusers `VQModel` training step, in one run.

    python benchmarks/train_throughput.py                      # CUDA when available, else CPU
    python benchmarks/train_throughput.py --markdown benchmarks/results/train_throughput_cpu.md

What is timed is end-to-end training throughput: images/s over `--iters` optimizer steps after `--warmup`
steps, data loading included, both sides reading the same stream (`hf_vq.data`, the built-in photos,
random crops, 2 loader workers):

- `hf-vq train loop`: the loop's own step functions (`train_step` + `optimizer_step` from
  `hf_vq.training.loop`) under `accelerator.prepare`, with what `hf-vq train` does by default: the
  all-rank finite-loss agreement, the quantizer-state guard, gradient clipping, the LR schedule and the
  EMA of the weights. Objective: L1 + codebook + commitment (the VQ objective, what diffusers' model returns).
- `diffusers VQModel`: the same architecture and the same initial weights as a `diffusers.VQModel`, in the
  plain loop of its VQGAN example: forward, L1 + `commit_loss`, backward, clip, AdamW step.
- `hf-vq train loop, VQ-GAN objective`: for scale, the full objective of the main job (LPIPS-AlexNet and the
  PatchGAN discriminator with the adaptive weight, discriminator step included). No diffusers counterpart.

The architecture is the main job's (`DEFAULT_VQGAN_CONFIG`) without its l2-normalised 8-d codes, which
`VQModel` cannot express. Peak memory and the case isolation (one fresh process per case) are `common.py`'s.
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from common import PeakMemory, base_parser, build_pair, emit, environment, format_table, pick_device, run_cases

CASES = ["hf-vq train loop", "diffusers VQModel", "hf-vq train loop, VQ-GAN objective"]


def architecture(resolution: int) -> dict:
    from hf_vq.training.tokenizer_types import DEFAULT_VQGAN_CONFIG

    arch = {k: v for k, v in DEFAULT_VQGAN_CONFIG.items() if k not in ("codebook_dim", "codebook_l2_norm")}
    return {**arch, "sample_size": resolution}


def data_loader(args):
    from hf_vq.data import build_train_dataloader, build_train_stream

    stream = build_train_stream(None, resolution=args.resolution, seed=0)
    return build_train_dataloader(stream, args.batch_size, num_workers=2)


def timed_steps(step, batches, warmup: int, iters: int, memory: PeakMemory, device) -> tuple[float, int]:
    """Seconds for `iters` steps after `warmup` steps, and the peak memory from before the first step."""
    memory.start()
    for _ in range(warmup):
        step(next(batches))
    peak = memory.peak_bytes()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step(next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, max(peak, memory.peak_bytes())


def ours_worker(case: str, args, device) -> tuple[float, int]:
    from accelerate.utils import set_seed

    from hf_vq.training import Trainable, parse_args
    from hf_vq.training.loop import build_accelerator, build_ema, build_optimizers, optimizer_step, train_step
    from hf_vq.training.objective import default_adam_beta1
    from hf_vq.training.tokenizer import TokenizerTask, build_objective
    from hf_vq.training.tokenizer_types import DEFAULT_DISCRIMINATOR_CONFIG

    gan = case.endswith("VQ-GAN objective")
    flags = ["--output-dir", tempfile.mkdtemp(), "--report-to", "none", "--resolution", str(args.resolution)]
    flags += ["--train-batch-size", str(args.batch_size), "--discriminator-start", "0", "--lr-warmup-steps", "0"]
    train_args = parse_args(flags)
    accelerator = build_accelerator(train_args)
    set_seed(0)
    model, _ = build_pair(architecture(args.resolution), torch.device("cpu"))
    models = [model.train()]
    if gan:
        from hf_vq.modeling.configuration_discriminator import VQGANDiscriminatorConfig
        from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator

        models.append(VQGANDiscriminator(VQGANDiscriminatorConfig(**DEFAULT_DISCRIMINATOR_CONFIG)).train())
    total_steps = args.warmup + args.iters
    objective = build_objective(train_args, model, total_steps) if gan else None
    names = ["generator", "discriminator"][: len(models)]
    trainables = [Trainable(name, m, train_args.learning_rate) for name, m in zip(names, models)]
    if train_args.adam_beta1 is None:  # `hf-vq train` resolves it from the GAN's schedule (TokenizerTask)
        train_args.adam_beta1 = default_adam_beta1(discriminator_trains=gan)
    optimizers, schedulers = build_optimizers(train_args, trainables, total_steps, 1)
    memory = PeakMemory(device)
    prepared = accelerator.prepare(*models, *optimizers, *schedulers, data_loader(args))
    n = len(models)
    models, optimizers, schedulers = list(prepared[:n]), list(prepared[n : 2 * n]), list(prepared[2 * n : 3 * n])
    batches = iter(prepared[-1])
    if objective is not None:
        objective.to(accelerator.device)
    ema = build_ema(train_args, accelerator.unwrap_model(models[0]))
    task = TokenizerTask(train_args)  # the step `hf-vq train` takes, on the prepared models
    task.model, task.discriminator, task.objective = models[0], models[1] if gan else None, objective

    def step(batch):
        with accelerator.accumulate(*models):
            out = train_step(accelerator, task, models, batch, step=1)
            optimizer_step(accelerator, train_args, dict(zip(names, models)), optimizers, schedulers, out.finite)
        ema.update_parameters(accelerator.unwrap_model(models[0]))

    return timed_steps(step, batches, args.warmup, args.iters, memory, device)


def diffusers_worker(args, device) -> tuple[float, int]:
    torch.manual_seed(0)
    _, model = build_pair(architecture(args.resolution), device)
    model.train()
    # The same optimizer settings as `hf-vq train`'s defaults.
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, betas=(0.5, 0.9), weight_decay=0.0)
    memory = PeakMemory(device)
    batches = iter(data_loader(args))

    def step(batch):
        pixel_values = batch["pixel_values"].to(device)
        output = model(pixel_values)
        loss = F.l1_loss(output.sample, pixel_values) + output.commit_loss.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed_steps(step, batches, args.warmup, args.iters, memory, device)


def main(argv: list[str]) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    defaults = (
        dict(batch_size=64, resolution=128, warmup=5, iters=30)
        if on_gpu
        else dict(batch_size=8, resolution=64, warmup=3, iters=10)
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.worker:
        import json

        if args.worker == "diffusers VQModel":
            seconds, peak = diffusers_worker(args, device)
        else:
            seconds, peak = ours_worker(args.worker, args, device)
        # `seconds` is for the whole timed window: report it per step so `run_cases` keeps the fastest run.
        print(
            json.dumps(
                dict(seconds=seconds / args.iters, peak_bytes=peak, items_per_s=args.batch_size * args.iters / seconds)
            )
        )
        return 0
    results = run_cases(__file__, CASES, argv, args.repeats)
    title = (
        f"Training throughput, main-job architecture (f4, 1024 codes), batch {args.batch_size} at "
        f"{args.resolution}x{args.resolution}, {args.iters} steps after {args.warmup}, fp32 ({environment()})"
    )
    reference = {"hf-vq train loop": "diffusers VQModel", "hf-vq train loop, VQ-GAN objective": "diffusers VQModel"}
    emit(format_table(title, [(case, results[case]) for case in CASES], reference), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
