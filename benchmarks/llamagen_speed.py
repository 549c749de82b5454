r"""Guided sampling speed: a converted LlamaGen GPT-B through hf-vq's `VQImagePipeline` against LlamaGen's own
`generate()`, on the same machine in one run.

GPT-B with random weights (LlamaGen's init, the zeroed head given random weights), 16x16 ids (256 px), 1000 classes,
classifier-free guidance 4 with top-k 2000 and temperature 1 (LlamaGen's sampling defaults), 8 images per call.
Ours: `VQImagePipeline(...)(class_labels, guidance_scale=4, top_k=2000, output_type="latent")`, the prior's
`generate_indices` with batched guidance rows and a preallocated KV cache; theirs: `generate(model, labels, 256,
cfg_scale=4, top_k=2000)` with its static KV cache (a causal mask over the whole cache at every token). Decoding the
ids to pixels is left out of both: it is the same VQ-16 decoder. On CUDA both run in bf16 (LlamaGen's
`--precision bf16`), on the CPU in fp32; each case in a fresh worker process, the fastest call kept.

    python benchmarks/llamagen_speed.py --llamagen-repo /tmp/llamagen --repeats 2 \
        --markdown benchmarks/results/llamagen_speed_cpu.md

Goals (issue #24): >= 1.0x LlamaGen's sampler on CPU, >= 1.5x its eager sampler on a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from common import (
    PeakMemory,
    base_parser,
    emit,
    environment,
    format_table,
    parse_with_device_defaults,
    pick_device,
    report_worker,
    run_cases,
    synchronize,
    time_it,
)

CASES = ["LlamaGen generate()", "ours: VQImagePipeline"]
GRID, CODES, CLASSES = 16, 16384, 1000


def parse(argv: list[str]):
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--llamagen-repo", required=True, help="a checkout of FoundationVision/LlamaGen")
    parser.add_argument("--cfg-scale", type=float, default=4.0)
    parser.add_argument("--top-k", type=int, default=2000)
    parser.add_argument("--note", default="", help="a sentence on the machine's load, written under the table")
    return parse_with_device_defaults(
        parser, argv, gpu=dict(batch_size=8, warmup=1, iters=3), cpu=dict(batch_size=8, warmup=0, iters=1)
    )


def build_models(repo: str, device: torch.device, dtype: torch.dtype, which: str):
    sys.path.insert(0, str(Path(repo).resolve()))
    from autoregressive.models.gpt import GPT_models

    torch.manual_seed(0)
    theirs = GPT_models["GPT-B"](vocab_size=CODES, block_size=GRID * GRID, num_classes=CLASSES).eval()
    torch.nn.init.normal_(theirs.output.weight, std=0.02)  # LlamaGen zero-initialises the head
    if which == CASES[0]:
        return theirs.to(device=device, dtype=dtype)

    from hf_vq.integrations.llamagen import convert_llamagen_gpt, llamagen_vq_config, vq_spec
    from hf_vq.modeling import VQGANModel
    from hf_vq.pipelines import VQImagePipeline

    torch.manual_seed(0)
    tokenizer = VQGANModel(llamagen_vq_config(vq_spec("VQ-16"))).eval()  # random: only its ids' layout matters here
    prior = convert_llamagen_gpt(theirs.state_dict(), tokenizer, "GPT-B", 256)
    del theirs
    pipe = VQImagePipeline(vqvae=tokenizer, transformer=prior).to(device)
    pipe.transformer.to(dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def worker(args, case: str) -> None:
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_grad_enabled(False)
    model = build_models(args.llamagen_repo, device, dtype, case)
    labels = torch.tensor([207, 360, 387, 974, 88, 979, 417, 279] * (args.batch_size // 8 + 1))[: args.batch_size]
    labels = labels.to(device)
    generator = torch.Generator(device).manual_seed(0)
    if case == CASES[0]:
        from autoregressive.models.generate import generate

        def step():
            return generate(model, labels, GRID * GRID, cfg_scale=args.cfg_scale, top_k=args.top_k, temperature=1.0)
    else:

        def step():
            return model(
                class_labels=labels,
                guidance_scale=args.cfg_scale,
                top_k=args.top_k,
                generator=generator,
                output_type="latent",
            ).images

    memory = PeakMemory(device)
    memory.start()
    seconds = time_it(step, device, warmup=args.warmup, iters=args.iters)
    synchronize(device)
    report_worker(seconds, memory.peak_bytes(), args.batch_size)


def main(argv: list[str]) -> int:
    args, on_gpu = parse(argv)
    if args.worker:
        worker(args, args.worker)
        return 0
    results = run_cases(__file__, CASES, argv, args.repeats)
    precision = "bf16" if on_gpu else "fp32"
    title = (
        f"## LlamaGen GPT-B guided sampling: ours vs LlamaGen's generate() (16x16 ids, cfg {args.cfg_scale:g}, "
        f"top-k {args.top_k}, batch {args.batch_size}, {precision})"
    )
    table = format_table("Sampling (images / s)", [(c, results[c]) for c in CASES], {CASES[1]: CASES[0]})
    ratio = results[CASES[1]]["items_per_s"] / results[CASES[0]]["items_per_s"]
    goal = 1.5 if on_gpu else 1.0
    lines = [
        title,
        "",
        f"{environment()}; fastest of {args.iters} call(s) x {args.repeats} worker run(s).",
        *([args.note] if args.note else []),
        "",
        table,
        "",
        f"Ours samples at {ratio:.2f}x LlamaGen's speed (goal >= {goal:g}x on {'a GPU' if on_gpu else 'the CPU'}).",
    ]
    emit("\n".join(lines), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
