"""Inference: encode+quantize and decode, ours vs diffusers' `VQModel` on the taming f16/16384 architecture.

    python benchmarks/encode_decode_speed.py           # CUDA when available (bf16 autocast, channels_last), else CPU

encode+quantize: images -> latents -> codes and token ids (`model.encode` for both; diffusers' `encode` stops at the
latents, so its quantizer is called on them). decode: quantized latents -> images (`decode(codes,
force_not_quantize=True)` for both). Same weights, same inputs, `torch.inference_mode()`. On the CPU the defaults are
a batch of 2 at 128x128 so the script finishes in a few minutes.
"""

from __future__ import annotations

import contextlib
import sys

import torch
from common import (
    TAMING_F16_16384,
    PeakMemory,
    base_parser,
    build_one,
    emit,
    environment,
    format_table,
    parse_with_device_defaults,
    pick_device,
    report_worker,
    run_cases,
    time_it,
)

CASES = ["ours encode", "diffusers encode", "ours decode", "diffusers decode"]


def worker(case: str, args) -> None:
    device = pick_device(args.device)
    which, task = case.split()
    channels_last = device.type == "cuda"
    model = build_one(which, TAMING_F16_16384, device, channels_last).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    pixel_values = (torch.rand(args.batch_size, 3, args.resolution, args.resolution, generator=generator) * 2 - 1).to(
        device
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    pixel_values = pixel_values.contiguous(memory_format=memory_format)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    side = args.resolution // 16
    codes = model.quantize.embedding.weight[
        torch.randint(0, 16384, (args.batch_size * side * side,), generator=generator).to(device)
    ]
    codes = codes.view(args.batch_size, side, side, -1).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)

    @torch.inference_mode()
    def step():
        with autocast:
            if task == "decode":
                return model.decode(codes, force_not_quantize=True).sample
            if which == "ours":
                return model.encode(pixel_values).indices
            return model.quantize(model.encode(pixel_values).latents)[2][2]

    memory = PeakMemory(device)
    memory.start()
    step()
    peak = memory.peak_bytes()
    seconds = time_it(step, device, warmup=args.warmup, iters=args.iters)
    report_worker(seconds, peak, args.batch_size)


def main(argv: list[str]) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    args, on_gpu = parse_with_device_defaults(
        parser,
        argv,
        gpu=dict(batch_size=16, resolution=256, warmup=3, iters=10),
        cpu=dict(batch_size=2, resolution=128, warmup=1, iters=3),
    )
    if args.worker:
        worker(args.worker, args)
        return 0
    results = run_cases(__file__, CASES, argv, args.repeats)
    precision = "bf16 autocast, channels_last" if on_gpu else "fp32"
    title = (
        f"Encode+quantize and decode, taming f16/16384, batch {args.batch_size} "
        f"at {args.resolution}x{args.resolution}, "
        f"{precision} ({environment()})"
    )
    reference = {"ours encode": "diffusers encode", "ours decode": "diffusers decode"}
    emit(format_table(title, [(case, results[case]) for case in CASES], reference), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
