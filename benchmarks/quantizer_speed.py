"""Nearest-code search alone: ours vs `torch.cdist` + argmin vs vector-quantize-pytorch, at N=65536, d=256, K=16384.

    python benchmarks/quantizer_speed.py            # CUDA when available, else CPU
    python benchmarks/quantizer_speed.py --n 8192   # a smaller problem

All three see the same fp32 latents and codebook (no autocast: the quantizer's search runs in fp32 by design).
Peak memory is what each needs beyond the inputs (see `common.py`). vector-quantize-pytorch's `VectorQuantize`
is timed in eval mode; it also gathers the codes, which is a small extra next to the search.
"""

from __future__ import annotations

import sys

import torch
from common import (
    PeakMemory,
    base_parser,
    emit,
    environment,
    format_table,
    pick_device,
    report_worker,
    run_cases,
    time_it,
)

CASES = ["ours", "cdist+argmin", "vector-quantize-pytorch"]


def worker(case: str, args) -> None:
    device = pick_device(args.device)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(args.n, args.dim, generator=generator).to(device)
    codebook = torch.randn(args.codes, args.dim, generator=generator).to(device)
    if case == "ours":
        from hf_vq.modeling.code_search import nearest_code

        def step():
            return nearest_code(latents, codebook, chunk_size=args.chunk_size)

    elif case == "cdist+argmin":

        @torch.no_grad()
        def step():
            return torch.cdist(latents, codebook).argmin(dim=1)

    else:
        try:
            from vector_quantize_pytorch import VectorQuantize
        except ImportError:
            print('{"skipped": "vector-quantize-pytorch is not installed"}')
            return
        quantizer = VectorQuantize(dim=args.dim, codebook_size=args.codes).to(device).eval()
        quantizer._codebook.embed.data.copy_(codebook.unsqueeze(0))
        quantizer._codebook.initted.fill_(True)
        batch = latents.unsqueeze(0)  # (1, N, D)

        @torch.no_grad()
        def step():
            return quantizer(batch)[1]

    memory = PeakMemory(device)
    memory.start()
    step()  # the first call is the one measured for memory: nothing cached yet
    peak = memory.peak_bytes()
    seconds = time_it(step, device, warmup=0, iters=args.iters)
    report_worker(seconds, peak, args.n, vectors=args.n)


def main(argv: list[str]) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=65536, help="latent vectors (N)")
    parser.add_argument("--dim", type=int, default=256, help="code dimension (d)")
    parser.add_argument("--codes", type=int, default=16384, help="codebook size (K)")
    parser.add_argument("--chunk-size", type=int, default=8192, help="ours: most rows per chunk (config default)")
    args = parser.parse_args(argv)
    if args.iters is None:
        args.iters = 10 if pick_device(args.device).type == "cuda" else 2
    if args.worker:
        worker(args.worker, args)
        return 0
    results = run_cases(__file__, CASES, argv, args.repeats)
    rows = [(case, results[case]) for case in CASES if "seconds" in results[case]]
    title = f"Nearest-code search, N={args.n}, d={args.dim}, K={args.codes}, fp32 ({environment()})"
    table = format_table(
        title, rows, {"ours": "cdist+argmin", "vector-quantize-pytorch": "cdist+argmin"}, unit="vectors/s"
    )
    table += "\n\n'speed vs peer' and 'memory vs peer' are against cdist+argmin; ms per call: " + ", ".join(
        f"{case} {result['seconds'] * 1e3:.0f}" for case, result in rows
    )
    skipped = [case for case in CASES if "seconds" not in results[case]]
    if skipped:
        table += f"\n\nSkipped: {', '.join(skipped)} (not installed)."
    emit(table, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
