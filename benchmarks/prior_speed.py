"""Stage-2 speed: our prior (transformers' Llama, `VQPriorForCausalLM`) against taming-transformers' own GPT.

The peer is `taming.modules.transformer.mingpt.GPT`, the prior of taming-transformers' Net2NetTransformer, at the
same depth, width, heads and sequence length (a class token, then an h x w grid of image ids). The feed-forward
widths hold the same parameters: taming's GELU MLP is 4d wide (8d² weights); Llama's SwiGLU has three matrices, so
8d/3 wide. Three measurements, each case in a fresh worker process:

- training: tokens per second of a forward + backward + AdamW step on a batch of full sequences;
- sampling: images per second of sampling every image id. taming's `sample` recomputes the whole sequence for
  every new token; ours keeps a KV cache (`generate_indices`);
- guided sampling: ours with classifier-free guidance (`guidance_scale=3`, one batch of cond + null rows per token)
  against ours unguided.

    python benchmarks/prior_speed.py --repeats 3 --markdown benchmarks/results/prior_speed_cpu.md

Goals (issue #15): sampling >= 5x taming's, training >= 1.0x, guided sampling <= 1.3x the unguided time.
"""

from __future__ import annotations

import sys
import time

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
)

TRAIN_CASES = ["taming GPT: train", "ours: train"]
SAMPLE_CASES = ["taming GPT: sample", "ours: sample", "ours: sample, guidance 3"]
NUM_CLASSES = 10


def parse(argv: list[str]):
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--grid", type=int, default=None, help="Image ids per side (sequence = 1 + grid²).")
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--sample-batch-size", type=int, default=None)
    parser.add_argument(
        "--guidance-only",
        action="store_true",
        help="only our unguided and guided sampling: the guidance cost, without the (slow, at 16x16) peer",
    )
    return parse_with_device_defaults(
        parser,
        argv,
        gpu=dict(batch_size=32, grid=16, layers=12, width=768, sample_batch_size=32, warmup=2, iters=5),
        cpu=dict(batch_size=8, grid=8, layers=4, width=256, sample_batch_size=8, warmup=1, iters=8),
    )


def build_ours(args, device):
    from hf_vq.modeling import VQPriorConfig, VQPriorForCausalLM

    config = VQPriorConfig(
        token_levels=[{"name": "tokens", "downsampling_factor": 16, "codebook_size": args.codebook_size}],
        image_size=16 * args.grid,
        num_classes=NUM_CLASSES,
        hidden_size=args.width,
        intermediate_size=round(8 * args.width / 3 / 8) * 8,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        class_dropout_prob=0.0,
    )
    return VQPriorForCausalLM(config).to(device)


def build_taming(args, device):
    from taming.modules.transformer.mingpt import GPT

    vocab = args.codebook_size + NUM_CLASSES + 1  # the same vocabulary as ours
    return GPT(vocab, block_size=1 + args.grid**2, n_layer=args.layers, n_head=args.heads, n_embd=args.width).to(
        device
    )


def sequences(args, device, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.codebook_size, (batch, args.grid**2), generator=generator)
    classes = args.codebook_size + torch.randint(0, NUM_CLASSES, (batch, 1), generator=generator)
    return torch.cat([classes, ids], dim=1).to(device)


def worker(case: str, args) -> None:
    device = pick_device(args.device)
    torch.manual_seed(0)
    taming = case.startswith("taming")
    model = build_taming(args, device) if taming else build_ours(args, device)
    memory = PeakMemory(device)
    if case.endswith("train"):
        model.train()
        batch = sequences(args, device, args.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            if taming:  # taming's Net2NetTransformer: logits of positions 0..L-1 predict ids 1..L
                logits, _ = model(batch[:, :-1])
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
                )
            else:
                loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        items = args.batch_size * args.grid**2  # image tokens trained on per step
    else:
        model.eval()
        classes = list(range(args.sample_batch_size))
        labels = [c % NUM_CLASSES for c in classes]

        @torch.no_grad()
        def step():
            if taming:
                from taming.modules.transformer.mingpt import sample

                prefix = torch.tensor(labels, device=device)[:, None] + args.codebook_size
                sample(model, prefix, steps=args.grid**2, sample=True)
            else:
                scale = 3.0 if "guidance" in case else 1.0
                model.generate_indices(class_labels=labels, guidance_scale=scale)

        items = args.sample_batch_size  # images per call
    memory.start()
    for _ in range(args.warmup):
        step()
    seconds = float("inf")
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = min(seconds, time.perf_counter() - start)
    report_worker(seconds, memory.peak_bytes(), items)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, _ = parse(argv)
    if args.worker:
        worker(args.worker, args)
        return 0
    passed = [a for a in argv if a not in ("--markdown", args.markdown)]
    shape = (
        f"{args.layers} layers, width {args.width}, {args.heads} heads, sequence 1 + {args.grid}x{args.grid}, "
        f"K = {args.codebook_size}"
    )
    sample_cases = SAMPLE_CASES[1:] if args.guidance_only else SAMPLE_CASES
    sample = run_cases(__file__, sample_cases, passed, args.repeats)
    sections = [
        f"## Prior speed: ours vs taming-transformers' GPT ({shape})",
        environment() + f"; training batch {args.batch_size}, sampling batch {args.sample_batch_size}; fastest "
        f"of {args.iters} calls x {args.repeats} worker runs.",
    ]
    if not args.guidance_only:
        train = run_cases(__file__, TRAIN_CASES, passed, args.repeats)
        sections.append(
            format_table(
                "Training (image tokens / s)",
                [(c, train[c]) for c in TRAIN_CASES],
                {"ours: train": "taming GPT: train"},
                unit="tokens/s",
            )
        )
    sections.append(
        format_table(
            "Sampling (images / s)",
            [(c, sample[c]) for c in sample_cases],
            {"ours: sample": "taming GPT: sample", "ours: sample, guidance 3": "ours: sample"},
        )
    )
    guided_cost = sample["ours: sample"]["items_per_s"] / sample["ours: sample, guidance 3"]["items_per_s"]
    sections.append(f"Guided sampling costs {guided_cost:.2f}x the unguided time (goal <= 1.3x).")
    text = "\n\n".join(sections)
    emit(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
