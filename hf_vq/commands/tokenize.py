"""`hf-vq tokenize TOKENIZER --dataset-name D --output DIR`: one split of an image dataset -> a token set, parquet
shards of token ids + labels that `hf-vq train-prior` trains on (`hf_vq.data.tokenize.tokenize_dataset`). Rerun the
same command to continue an interrupted run. Prints the split's row count.

    hf-vq tokenize TOKENIZER --dataset-name fashion_mnist --output tokens/ --flip
    hf-vq tokenize TOKENIZER --dataset-name fashion_mnist --output tokens/ --split test
"""

from __future__ import annotations

import sys

from ..parsing import CommandParser
from .common import DATASET_ALIASES, RESOLUTION_ALIASES, add_dataset_arguments, add_device_arguments


def build_parser() -> CommandParser:
    from ..data.tokenize import DEFAULT_SHARD_SIZE

    parser = CommandParser(
        prog="hf-vq tokenize",
        description="Encode an image dataset with a tokenizer into parquet shards of token ids + labels (a token "
        "set `hf-vq train-prior` trains on). Rerun the same command to continue an interrupted run.",
        aliases={**DATASET_ALIASES, **RESOLUTION_ALIASES},
    )
    parser.add_argument("tokenizer", help="hf-vq tokenizer: folder or Hub id")
    add_dataset_arguments(
        parser,
        required=True,
        help="images as `hf-vq train` reads them: a Hub id, an image folder, parquet / .tar shards, or fashion_mnist "
        "(the Debian package dataset-fashion-mnist)",
    )
    parser.add_argument("--split", default="train", help="split to tokenize (default: train)")
    parser.add_argument("--image-column", default=None, help="image column (default: detected)")
    parser.add_argument("--label-column", default=None, help="class label column (default: `label` if present)")
    parser.add_argument("--no-labels", action="store_true", help="ignore labels: tokens for an unconditional prior")
    parser.add_argument("--flip", action="store_true", help="also encode the horizontally flipped view of each image")
    parser.add_argument(
        "--resolution", type=int, default=None, help="resize + center-crop side (default: tokenizer's)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="source images per shard")
    parser.add_argument("--num-images", type=int, default=None, help="only the first N images of the split")
    parser.add_argument("--output", required=True, help="token set folder")
    parser.add_argument("--overwrite", action="store_true", help="delete tokens of other settings in --output first")
    add_device_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..data.tokenize import tokenize_dataset
    from ..loading import default_device, load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer, default_device(args.device), trust_remote_code=args.trust_remote_code)
    info = tokenize_dataset(
        tokenizer,
        args.tokenizer,
        args.dataset_name,
        args.output,
        split=args.split,
        dataset_config_name=args.dataset_config_name,
        image_column=args.image_column,
        label_column=None if args.no_labels else args.label_column,
        flip=args.flip,
        image_size=args.resolution,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        num_images=args.num_images,
        overwrite=args.overwrite,
        report=lambda line: print(line, file=sys.stderr),  # beside the progress bar; stdout keeps the result line
    )
    entry = info["splits"][args.split]
    print(f"{args.output}\t{args.split}: {entry['num_rows']} rows of {info['sequence_length']} {info['dtype']} ids")
    return 0
