"""`hf-vq generate PIPELINE`: images from a `VQImagePipeline` (or a prior + its tokenizer), written as one grid PNG,
a row of `--num-images` per class label (`hf_vq.pipelines.sample_images`). Prints the grid's path and size.

    hf-vq generate prior/ --class-label Sandal --num-images 16 --guidance-scale 2 --output grid.png
"""

from __future__ import annotations

import json
from pathlib import Path

from ..parsing import CommandParser


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="hf-vq generate",
        description="Generate images with a VQImagePipeline (or a prior + its tokenizer) and write them as a grid "
        "PNG: one row of --num-images per class label.",
    )
    parser.add_argument("model", help="pipeline folder / Hub id (hf-vq train-prior's output), or a prior's")
    parser.add_argument("--tokenizer", default=None, help="tokenizer for a prior alone (default: the one it records)")
    parser.add_argument(
        "--class-label",
        nargs="+",
        default=None,
        help="class ids or names (e.g. 3 Sandal); default: every class of a class-conditional prior",
    )
    parser.add_argument("--num-images", type=int, default=8, help="images per class label (in total if unconditional)")
    parser.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance (1: none)")
    # The prior family's own sampling options: only those given go to the pipeline, which names the options a
    # family takes when given another (an autoregressive prior: temperature, top-k, top-p; a masked one: steps).
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: 1; 0: greedy)")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely ids")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    parser.add_argument("--num-inference-steps", type=int, default=None, help="decoding steps of a masked prior")
    parser.add_argument(
        "--sampling-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other sampling option of the prior's family, repeatable (e.g. --sampling-option top_k=50); the "
        "value is read as JSON (a number, true / false / null), else as text. An option the family does not take is "
        "an error that lists the ones it does",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--columns", type=int, default=None, help="grid columns (default: --num-images, at most 16)")
    parser.add_argument("--output", default="grid.png", help="grid PNG (default: grid.png)")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    return parser


def parse_sampling_options(values: list[str], given: dict) -> dict:
    """`--sampling-option NAME=VALUE`s as keyword arguments (`NAME` with dashes or underscores), after the named
    flags in `given`; a malformed entry, or one that repeats an option, is a `ValueError` naming it."""
    options = dict(given)
    for entry in values:
        name, equals, text = entry.partition("=")
        name = name.strip().replace("-", "_")
        if not equals or not name.isidentifier():
            raise ValueError(f"--sampling-option expects NAME=VALUE (e.g. top_k=50); got {entry!r}.")
        if name in options:
            raise ValueError(f"--sampling-option {entry!r}: the option {name!r} is already given; give it once.")
        try:
            options[name] = json.loads(text)
        except json.JSONDecodeError:
            options[name] = text  # plain text, e.g. decoding_order=halton
    return options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_images < 1:
        raise ValueError(f"--num-images must be an integer >= 1; got {args.num_images}.")
    options = ("temperature", "top_k", "top_p", "num_inference_steps")
    given = {name: getattr(args, name) for name in options if getattr(args, name) is not None}
    sampling = parse_sampling_options(args.sampling_option, given)
    import torch

    from ..data.images import image_grid
    from ..loading import default_device, load_pipeline
    from ..pipelines.sampling import sample_images

    device = default_device(args.device)
    pipe = load_pipeline(args.model, args.tokenizer, device)
    config = pipe.transformer.config
    labels = args.class_label
    if labels is not None:
        labels = pipe.get_label_ids([int(v) if v.lstrip("-").isdigit() else v for v in labels])
    elif config.num_classes > 0:
        labels = list(range(config.num_classes))
    generator = torch.Generator(device).manual_seed(args.seed)
    images = sample_images(pipe, labels, args.num_images, args.guidance_scale, generator, **sampling)
    columns = args.columns or min(args.num_images, 16)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, columns).save(output)
    rows = len(labels) if labels else 1
    print(f"{output}\t{images.shape[0]} images ({rows} label(s) x {args.num_images}), {images.shape[-1]}px")
    return 0
