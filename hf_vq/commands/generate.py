"""`hf-vq generate PIPELINE`: images from a `VQImagePipeline` (or a prior + its tokenizer), written as one grid PNG,
a row of `--num-images` per class label (`hf_vq.pipelines.sample_images`). Prints the grid's path and size.

    hf-vq generate prior/ --class-label Sandal --num-images 16 --guidance-scale 2 --output grid.png

With `--image in.png --mask mask.png` a prior that can edit (a masked prior) repaints the white region of the mask:
a row of `--num-images` edits per class label.
"""

from __future__ import annotations

import json
import os
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
    parser.add_argument(
        "--image",
        default=None,
        help="an image to edit instead of sampling new ones (a masked prior): the prior's image size, or smaller to "
        "outpaint around it",
    )
    parser.add_argument("--mask", default=None, help="with --image: white where to regenerate, black where to keep")
    parser.add_argument(
        "--output-size",
        type=int,
        default=None,
        help="side of the images in pixels, bicubic-resized (e.g. 256 for a 384-px LlamaGen model; default: the "
        "prior's image size)",
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


def check_arguments(args) -> None:
    """Refuses, before any model is loaded, every value `hf-vq generate` cannot use, in `hf-vq train-prior`'s words
    where it has the same flag (`--sample-guidance-scale` there): a `ValueError` naming the flag, what it must be, the
    value received and, for `--output`, the path in the way."""
    for name in ("num_images", "columns", "output_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(_flag_error(name, "an integer >= 1", value))
    if not args.guidance_scale >= 0:  # `not >=`: NaN is refused too
        raise ValueError(_flag_error("guidance_scale", "a number >= 0", args.guidance_scale))
    if args.mask is not None and args.image is None:
        raise ValueError("--mask was given without --image: pass the image to edit with --image in.png.")
    if args.image is not None:
        from ..data.images import check_image_files

        check_image_files([args.image, *([args.mask] if args.mask else [])])
    check_output_path(Path(args.output))


def check_output_path(output: Path) -> None:
    """Raises a `ValueError` when the grid cannot be written at `output`: a folder there, a file where a parent
    folder must be, a folder that is not writable, or a file name without an image format's extension."""
    from PIL import Image

    if output.is_dir():
        raise ValueError(
            f"--output {output} is a folder; the grid is one image file. Give a file name, e.g. --output "
            f"{output / 'grid.png'}."
        )
    extensions = {ext: fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
    if output.suffix.lower() not in extensions:
        raise ValueError(
            f"--output {output} must end in an image extension that Pillow writes (.png, .jpg, .webp, ...); got "
            f"{output.suffix or 'no extension'!r}. Use e.g. --output {output.with_suffix('.png')}."
        )
    parent = output.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: mkdir would fail on it
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(
            f"--output {output} cannot be written: {parent} is a file, not a folder. Choose another --output, or move "
            "that file away."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--output {output} cannot be written: the folder {parent} is not writable by this user.")


def _flag_error(name: str, expected: str, received) -> str:
    # The words of hf_vq.training.arguments.flag_error (test_stage2_safety compares them), without importing
    # transformers before the first check.
    return f"--{name.replace('_', '-')} must be {expected}; got {received!r}."


def save_grid(grid, output: Path) -> None:
    """Writes the grid image to `output` through a sibling temporary file and `os.replace`: a reader sees no file or
    the whole image, and an interrupted run leaves no half-written one under the final name."""
    from PIL import Image

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        grid.save(partial, format=Image.registered_extensions()[output.suffix.lower()])
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_arguments(args)
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
    if args.image is not None:  # one copy of the image (and its mask) per class label: a row of edits each
        from ..data.images import decode_image

        sampling["image"] = [decode_image(args.image)] * (len(labels) if labels else 1)
        sampling["mask_image"] = decode_image(args.mask).convert("L") if args.mask else None
    if args.output_size is not None:
        sampling["output_size"] = args.output_size
    images = sample_images(pipe, labels, args.num_images, args.guidance_scale, generator, **sampling)
    columns = args.columns or min(args.num_images, 16)
    output = Path(args.output)
    save_grid(image_grid(images, columns), output)
    rows = len(labels) if labels else 1
    print(f"{output}\t{images.shape[0]} images ({rows} label(s) x {args.num_images}), {images.shape[-1]}px")
    return 0
