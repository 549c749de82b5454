"""Does `hf-vq train-prior --init-from` pay? A prior pretrained on some Fashion-MNIST classes, fine-tuned on the
other classes, against the same prior trained from scratch on them, at an equal step budget (issue #24).

No real LlamaGen GPT can be had offline, and a converted model of random weights would show nothing, so the
pretrained prior is hf-vq's own: `hf-vq train-prior` on the tokens of Fashion-MNIST classes 0-4 (T-shirt/top,
Trouser, Pullover, Dress, Coat). The "user's images" are classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), a
token set of their own with labels 0-4 and those names: none matches a pretrained class, so `--init-from` appends
five class rows (started from the null class's row) after the pretrained five. Both arms then train with the same
flags, seeds and steps on those images; the only difference is `--init-from`. Scored every `--eval-every` steps by the
held-out NLL of the classes 5-9 test images (nats per image token over each position's id range: what `hf-vq
evaluate-prior` and train-prior's eval report), step 0 included.

    apt-get install dataset-fashion-mnist
    python benchmarks/prior_finetune.py --seeds 0 1          # ~15 min on 2 idle CPU cores

The tokenizer and tokens are made with the README's `hf-vq train` / `hf-vq tokenize` (`--workdir`; reused when
present).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_vq.data import tokens as token_files

RESULTS = Path(__file__).resolve().parent / "results"
PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
FINETUNE_CLASSES = (5, 6, 7, 8, 9)
# generation_quality.py's tokenizer: a small f4 VQ-VAE, 8x8 = 64 tokens per 32 px image, 256 codes.
TOKENIZER_CONFIG = {
    "hidden_channels": 64,
    "residual_hidden_channels": 32,
    "latent_channels": 16,
    "num_vq_embeddings": 256,
    "sample_size": 32,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--finetune-images", type=int, default=3000, help="training images of classes 5-9 used")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--eval-images", type=int, default=1000, help="held-out images of classes 5-9 scored")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--tokenizer-steps", type=int, default=800, help="only if the tokens must be made")
    parser.add_argument("--tokenize-images", type=int, default=20000, help="training images tokenized (first N)")
    parser.add_argument("--workdir", default="outputs/prior_finetune")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--note", default="", help="a line for the result (e.g. that the cores were shared)")
    parser.add_argument("--output", default=str(RESULTS / "prior_finetune.md"))
    return parser.parse_args(argv)


def fashion_mnist_tokens(args) -> Path:
    """Fashion-MNIST tokens (train and test), made with the README's commands when absent: `hf-vq train` of a small
    f4 VQ-VAE at 32 px, then `hf-vq tokenize` of both splits."""
    from hf_vq.commands.tokenize import main as tokenize_main
    from hf_vq.training import parse_args as train_args
    from hf_vq.training import train as train_tokenizer

    work = Path(args.workdir)
    tokenizer, tokens = work / "tokenizer", work / "tokens"
    if not (tokenizer / "config.json").is_file():
        flags = ["--model-type", "vqvae", "--model-config", json.dumps(TOKENIZER_CONFIG), "--dataset-name"]
        flags += ["fashion_mnist", "--resolution", "32", "--max-train-steps", str(args.tokenizer_steps)]
        flags += ["--train-batch-size", "32", "--learning-rate", "1e-3", "--adam-beta1", "0.9", "--report-to", "none"]
        flags += ["--checkpointing-steps", "0", "--image-logging-steps", "0", "--output-dir", str(tokenizer)]
        if train_tokenizer(train_args(flags)) != 0:
            raise RuntimeError("hf-vq train stopped early")
    for split, count in (("train", args.tokenize_images), ("test", None)):
        if not _split_done(tokens, split):
            argv = [str(tokenizer), "--dataset-name", "fashion_mnist", "--split", split, "--output", str(tokens)]
            if tokenize_main(argv + (["--num-images", str(count)] if count else [])) != 0:
                raise RuntimeError(f"hf-vq tokenize failed on the {split} split")
    return tokens


def _split_done(tokens: Path, split: str) -> bool:
    info = tokens / "tokens_info.json"
    return info.is_file() and json.loads(info.read_text()).get("splits", {}).get(split, {}).get("complete", False)


def class_subset(source: Path, output: Path, classes: tuple[int, ...], limits: dict[str, int | None]) -> Path:
    """A token set of `source`'s images of `classes` only, relabelled 0..len(classes)-1 under their names: a user's
    own labelled images, as `hf-vq tokenize` would have left them (original views only)."""
    info = token_files.load_tokens_info(str(source))
    names = [info["label_names"][c] for c in classes]
    meta = token_files.new_tokens_info(
        **{k: info[k] for k in ("tokenizer", "tokenizer_config_hash", "tokenizer_class", "token_levels")},
        **{k: info[k] for k in ("image_size", "sequence_length", "vocabulary_size")},
        label_names=names,
        num_classes=len(names),
    )
    features = token_files.tokens_features(info["sequence_length"], meta["dtype"], names, has_labels=True)
    for split, limit in limits.items():
        ids, labels = token_files.token_arrays(token_files.load_tokens(str(source), split), unflipped_only=True)
        keep = np.flatnonzero(np.isin(labels, classes))[:limit]
        relabel = np.searchsorted(np.array(classes), labels[keep])
        settings = dict(dataset=f"{info['splits'][split].get('dataset')} classes {list(classes)}", flip=False)
        token_files.start_split(output, meta, split, {**settings, "shard_size": len(keep)}, overwrite=True)
        token_files.write_shard(output, split, 0, features, ids[keep], np.zeros(len(keep), bool), relabel)
        token_files.finish_split(output, split, num_rows=len(keep), max_label=len(classes) - 1)
    return output


def train(args, tokens: Path, output: Path, steps: int, seed: int, init_from: Path | None = None) -> list:
    """`hf-vq train-prior` on `tokens`; returns the held-out NLL curve [(step, nats per token)], step 0 first."""
    from hf_vq.evaluation.generation import held_out_score
    from hf_vq.training.loop import run_training
    from hf_vq.training.prior import PriorTask
    from hf_vq.training.prior_arguments import parse_prior_args

    curve = []

    class Recorded(PriorTask):
        """train-prior's own task; its held-out scores are kept, and one is taken before the first step."""

        def build_data(self, accelerator):
            data = super().build_data(accelerator)
            score = held_out_score(self.model, self.eval_tokens, self.eval_labels, batch_size=256)
            curve.append((0, score["nats_per_token"]))
            return data

        def evaluate(self, run):
            score = super().evaluate(run)
            step = run.state.global_step
            if score is not None and (not curve or curve[-1][0] != step):
                curve.append((step, score["nats_per_token"]))
            return score

    argv = [
        "--tokens",
        str(tokens),
        "--output-dir",
        str(output),
        "--overwrite-output-dir",
        "--max-train-steps",
        str(steps),
        "--train-batch-size",
        str(args.batch_size),
        "--learning-rate",
        str(args.learning_rate),
        "--hidden-size",
        str(args.hidden_size),
        "--num-hidden-layers",
        str(args.layers),
        "--num-attention-heads",
        "4",
        "--eval-steps",
        str(args.eval_every),
        "--num-eval-examples",
        str(args.eval_images),
        "--image-logging-steps",
        "0",
        "--checkpointing-steps",
        "0",
        "--report-to",
        "none",
        "--logging-steps",
        str(steps),
        "--seed",
        str(seed),
        *(["--init-from", str(init_from)] if init_from else []),
    ]
    parsed = parse_prior_args(argv)
    if run_training(parsed, Recorded(parsed)) != 0:
        raise RuntimeError(f"train-prior stopped early: {output}")
    return curve


def markdown(args, curves: dict, seconds: dict, counts: dict) -> str:
    steps = [s for s, _ in curves["scratch"][args.seeds[0]]]
    rows = ["| step | from scratch | --init-from (pretrained) | difference |", "|---:|---:|---:|---:|"]
    for i, step in enumerate(steps):
        scratch = np.mean([curves["scratch"][s][i][1] for s in args.seeds])
        tuned = np.mean([curves["init_from"][s][i][1] for s in args.seeds])
        rows.append(f"| {step} | {scratch:.4f} | {tuned:.4f} | {tuned - scratch:+.4f} |")
    final = {arm: [curves[arm][s][-1][1] for s in args.seeds] for arm in curves}
    per_seed = ", ".join(
        f"seed {s}: {a:.4f} vs {b:.4f}" for s, a, b in zip(args.seeds, final["scratch"], final["init_from"])
    )
    target, reached_at = np.mean(final["scratch"]), None
    for i, step in enumerate(steps):
        if np.mean([curves["init_from"][s][i][1] for s in args.seeds]) <= target:
            reached_at = step
            break
    reached = f"--init-from reaches scratch's final NLL at step {reached_at}." if reached_at is not None else ""
    hardware = f"{platform.machine()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}"
    return f"""# Fine-tuning a pretrained prior (`--init-from`) against training from scratch

- date: {datetime.date.today()}; machine: 2-core CPU VM, {hardware}{"; " + args.note if args.note else ""}
- command: `python benchmarks/prior_finetune.py {" ".join(sys.argv[1:])}`
- pretrained prior: `hf-vq train-prior` on the tokens of {counts["pretrain"]} Fashion-MNIST training images of
  classes 0-4 (those among the first {args.tokenize_images}), {args.pretrain_steps} steps of batch {args.batch_size},
  lr {args.learning_rate}; Llama {args.layers} layers x {args.hidden_size}, positions `rope+2d`; tokenizer: VQ-VAE f4
  at 32 px, 256 codes, {args.tokenizer_steps} steps of `hf-vq train` ({args.workdir}/tokenizer)
- fine-tuning data: {counts["finetune"]} training images of classes 5-9, their own token set (labels 0-4, named
  Sandal ... Ankle boot: none is a pretrained class, so all five are appended as new class rows)
- both arms: {args.finetune_steps} steps of batch {args.batch_size}, lr {args.learning_rate}, the same seed
  ({", ".join(map(str, args.seeds))}); the only difference is `--init-from`
- score: held-out NLL of {args.eval_images} test images of classes 5-9, nats/token (lower is better), mean over seeds

{chr(10).join(rows)}

Final NLL per seed (scratch vs --init-from): {per_seed}. {reached}

Time: {", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())}.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work, seconds = Path(args.workdir), {}
    start = time.perf_counter()
    tokens = fashion_mnist_tokens(args)
    pretrain = class_subset(tokens, work / "tokens_0-4", PRETRAIN_CLASSES, {"train": None, "test": 1000})
    finetune = class_subset(
        tokens, work / "tokens_5-9", FINETUNE_CLASSES, {"train": args.finetune_images, "test": args.eval_images}
    )
    seconds["tokens"] = time.perf_counter() - start
    start = time.perf_counter()
    pretrained = work / "pretrained"
    if not (pretrained / "model_index.json").is_file():
        train(args, pretrain, pretrained, args.pretrain_steps, seed=0)
    seconds["pretraining"] = time.perf_counter() - start
    curves = {"scratch": {}, "init_from": {}}
    start = time.perf_counter()
    for seed in args.seeds:
        for arm, init in (("scratch", None), ("init_from", pretrained)):
            curves[arm][seed] = train(args, finetune, work / f"{arm}-{seed}", args.finetune_steps, seed, init)
            print(arm, seed, curves[arm][seed], flush=True)
    seconds["both arms"] = time.perf_counter() - start
    counts = {
        name: token_files.load_tokens_info(str(path))["splits"]["train"]["num_rows"]
        for name, path in (("pretrain", pretrain), ("finetune", finetune))
    }
    text = markdown(args, curves, seconds, counts)
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps(curves, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
