r"""The masked prior's quality against its training budget, beside the causal prior at `masked_vs_ar.py`'s budget.

Issue #25 asks that the masked prior's FID be no worse than the causal prior's, and, if it needs more training steps
to get there, for the curve rather than a smaller causal baseline. This script trains masked priors for each budget
in `--budgets` (same tokens, model, batch, learning rate and schedule as `masked_vs_ar.py`, only
`--max-train-steps` differs), evaluates them with the same protocol and seeds, and sets them beside the rows of the
committed `masked_vs_ar.py` result (its `--prior-steps` budget, read from the JSON at the end of `--reference`).

    python benchmarks/masked_vs_ar.py --workdir outputs/masked_vs_ar_full      # tokens, the priors, the reference
    python benchmarks/masked_steps.py --workdir outputs/masked_vs_ar_full --budgets 600 1200 --seeds 0

Picks CUDA where there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import emit, environment, pick_device
from masked_vs_ar import GUIDANCE, RESULTS, build_parser, interval, make_evaluator, make_tokens, train_prior


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser(__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[600, 1200], help="masked prior training steps")
    parser.add_argument(
        "--reference", type=Path, default=RESULTS / "masked_vs_ar.md", help="the committed masked_vs_ar.py result"
    )
    parser.set_defaults(output=str(RESULTS / "masked_steps.md"), reuse=True)
    return parser.parse_args(argv)


def reference_rows(path: Path, seeds: list[int]) -> dict[str, list[dict]]:
    """Per family, the `masked_vs_ar.py` entries of `seeds`, from the JSON at the end of its result (each entry
    records the seed it sampled with)."""
    text = path.read_text()
    data = json.loads(text[text.index("```json") + len("```json") : text.rindex("```")])
    rows = {}
    for family, entries in data["quality"].items():
        by_seed = {entry["sampling"]["seed"]: entry for entry in entries}
        missing = sorted(set(seeds) - set(by_seed))
        if missing:
            raise SystemExit(f"{path} has no {family} run of seeds {missing} (it ran {sorted(by_seed)}).")
        rows[family] = [by_seed[seed] for seed in seeds]
    return rows


def row(label: str, entries: list[dict]) -> str:
    cells = []
    for scale in GUIDANCE:
        name = f"prior_guidance_{scale:g}"
        for key, factor, digits in (("fid", 1.0, 2), ("kid", 1e3, 2)):
            mean, half = interval([e["rows"][name][key] * factor for e in entries])
            cells.append(f"{mean:.{digits}f} ± {half:.{digits}f}")
    mean, half = interval([e["rows"]["prior_guidance_3"]["class_accuracy"] for e in entries])
    cells.append(f"{mean:.3f} ± {half:.3f}")
    score = interval([e["held_out_score"]["nats_per_token"] for e in entries])
    return f"| {label} | " + " | ".join(cells) + f" | {score[0]:.3f} |"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = pick_device(args.device)
    work = Path(args.workdir)
    reference = reference_rows(args.reference, args.seeds)
    started = time.perf_counter()
    tokens = make_tokens(args, work)
    budget = args.prior_steps
    folders = {}
    for steps in args.budgets:
        args.prior_steps = steps
        for seed in args.seeds:
            folders[(steps, seed)] = work / f"masked-{seed}-{steps}steps"
            train_prior(args, tokens, "masked", seed, folders[(steps, seed)])
    trained = time.perf_counter() - started
    evaluate = make_evaluator(args, tokens, device)[0]
    curve = {steps: [evaluate(folders[(steps, seed)], seed)[0] for seed in args.seeds] for steps in args.budgets}
    total = time.perf_counter() - started

    header = (
        f"| prior (steps) | FID g1 (N={args.num_images}) | KID x1000 g1 | FID g3 | KID x1000 g3 | "
        "class accuracy g3 | held-out score |"
    )
    lines = [
        "# The masked prior's quality against its training budget (issue #25)",
        "",
        f"{environment()}.",
        *([args.note] if args.note else []),
        f"Command: `python benchmarks/masked_steps.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"Seeds {args.seeds}; mean ± 95% t-interval over them (± 0 for one seed). The {budget}-step rows are the "
        f"committed `masked_vs_ar.py` run ([{args.reference.name}]({args.reference.name})), the same seeds' "
        "entries; the others train the masked prior with the same flags and only `--max-train-steps` changed "
        "(the cosine schedule spans each run's own budget). Held-out score: the causal prior's NLL, the masked "
        "prior's masked-token cross-entropy (nats per scored id; not comparable across families).",
        "",
        header,
        "|---|---:|---:|---:|---:|---:|---:|",
        row(f"causal ({budget})", reference["causal"]),
        row(f"masked ({budget})", reference["masked"]),
        *[row(f"masked ({steps})", curve[steps]) for steps in args.budgets],
        "",
        f"Time: training {trained / 60:.1f} min, evaluation {(total - trained) / 60:.1f} min.",
        "",
        "<details><summary>All numbers (JSON)</summary>",
        "",
        "```json",
        json.dumps({str(steps): entries for steps, entries in curve.items()}, indent=1, default=str),
        "```",
        "",
        "</details>",
    ]
    emit("\n".join(lines), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
