"""`hf-vq train-prior`: train a transformer prior (`VQPriorForCausalLM`) over a token set made by `hf-vq tokenize`.

The prior task, plugged into the shared loop (`loop.py`: mixed precision, accumulation, EMA, atomic checkpoints,
exact resume, TensorBoard, push):

    build_models      a fresh `VQPriorConfig.from_tokenizer(...)` sized by the flags, or `--init-from` a saved prior;
                      the tokenizer is loaded (frozen) to check its config hash and to decode sample grids
    build_data        the token set in memory, made into `[class or null token, ids...]` rows by the prior's own
                      `build_input_ids`, a seeded shuffling loader; held-out original views for the NLL
    train_step        cross-entropy on the image ids (the model's loss; class dropout inside its forward)
    watch / save      every N steps a grid of generated images per class and the held-out NLL (`prior_nll`: the
                      number `hf-vq evaluate-prior` reports); at the end a `VQImagePipeline` folder
                      (`model_index.json`, `vqvae/`, `transformer/`), `samples.png` and a README.md card
    push / report     with --push-to-hub the pipeline folder goes up in one commit; the summary is logged

The output folder is a pipeline: `VQImagePipeline.from_pretrained(output_dir)` or `hf-vq generate output_dir`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.images import image_grid
from ..data import tokens as token_files
from ..evaluation.generation import prior_nll
from ..modeling import VQPriorConfig, VQPriorForCausalLM, tokenizer_config_hash
from .arguments import parse_args, parse_json_or_file
from .loop import Run, Task, TaskStep, Trainable, TrainData, run_training
from ..pipelines.sampling import sample_images
from .monitoring import log_grid
from .prior_arguments import PRIOR_DESCRIPTION, PriorArguments

logger = logging.getLogger(__name__)

SAMPLES_NAME = "samples.png"
EVAL_RESULTS_NAME = "eval_results.json"
EVAL_BATCH_SIZE = 256
GRID_SEED = 0  # the grids of a run use one fixed seed, so they show the prior changing, not the noise
PIPELINE_FILES = ("model_index.json", "vqvae", "transformer", "README.md", SAMPLES_NAME, EVAL_RESULTS_NAME, "samples")
UPLOADED_FILES = (SAMPLES_NAME, EVAL_RESULTS_NAME)  # with the pipeline's own files; per-step grids stay local


# ------------------------------------------------------------------------------------------------ data


def _collate(rows: list[torch.Tensor]) -> dict:
    return {"input_ids": torch.stack([r[0] for r in rows])}


class PriorTask(Task):
    """Trains one prior on a token set with `hf-vq train-prior`'s arguments."""

    command = "hf-vq train-prior"
    example_name = "images"
    progress_keys = ("loss", "bits_per_token")
    output_names = PIPELINE_FILES

    def __init__(self, args: PriorArguments):
        self.args = args
        self.info = token_files.load_tokens_info(args.tokens)
        self.tokenizer = None
        self.model: VQPriorForCausalLM | None = None
        self.eval_tokens: torch.Tensor | None = None  # (N, L) held-out ids, flattened as the token set stores them
        self.eval_labels: torch.Tensor | None = None
        self.eval_split: str | None = None
        self.last_eval: dict | None = None

    # -------------------------------------------------------------------------------------------- models

    def build_models(self) -> list[Trainable]:
        args, info = self.args, self.info
        from transformers import AutoModel

        source = args.tokenizer or info["tokenizer"]
        self.tokenizer = AutoModel.from_pretrained(source).eval().requires_grad_(False)
        if tokenizer_config_hash(self.tokenizer) != info["tokenizer_config_hash"]:
            raise ValueError(
                f"The tokenizer {source} (config hash {tokenizer_config_hash(self.tokenizer)}) is not the one the "
                f"token set {args.tokens} was made with (hash {info['tokenizer_config_hash']}, {info['tokenizer']}). "
                "Pass that tokenizer with --tokenizer, or tokenize again with this one."
            )
        if args.init_from is not None:
            folder = Path(args.init_from)
            sub = "transformer" if (folder / "model_index.json").is_file() else ""
            self.model = VQPriorForCausalLM.from_pretrained(args.init_from, subfolder=sub)
            self.model.check_tokenizer(self.tokenizer)
            if list(self.model.config.image_size) != list(info["image_size"]):
                height, width = self.model.config.image_size
                raise ValueError(
                    f"The token set {args.tokens} holds ids of {info['image_size'][0]}x{info['image_size'][1]} "
                    f"images; the prior of --init-from {args.init_from} models {height}x{width} images. Tokenize "
                    f"at that size (`hf-vq tokenize ... --image-size {height}`), or train a new prior without "
                    "--init-from."
                )
        else:
            self.model = VQPriorForCausalLM(self.prior_config(source))
        self.model.train()
        return [Trainable("prior", self.model, args.learning_rate, folder="transformer")]

    def prior_config(self, tokenizer_source: str) -> VQPriorConfig:
        args, info = self.args, self.info
        num_classes = 0 if args.unconditional else int(info.get("num_classes") or 0)
        names = info.get("label_names") if num_classes else None
        fields = dict(
            hidden_size=args.hidden_size,
            num_hidden_layers=args.num_hidden_layers,
            num_attention_heads=args.num_attention_heads,
            num_key_value_heads=args.num_attention_heads,
            intermediate_size=args.intermediate_size or 3 * args.hidden_size,
            position_embedding=args.position_embedding,
            class_dropout_prob=args.class_dropout_prob,
            **({"id2label": dict(enumerate(names))} if names else {}),
        )
        if args.model_config:
            fields.update(parse_json_or_file(args.model_config, "--model-config"))
        return VQPriorConfig.from_tokenizer(
            self.tokenizer, image_size=info["image_size"], num_classes=num_classes,
            tokenizer_name_or_path=tokenizer_source, **fields,
        )  # fmt: skip

    # -------------------------------------------------------------------------------------------- data

    def build_data(self, accelerator) -> TrainData:
        args, info, config = self.args, self.info, self.model.config
        train = token_files.load_tokens(args.tokens, args.train_split)
        ids, labels = token_files.token_arrays(train, unflipped_only=not args.use_flipped)
        # `[class or null token, ids...]` rows by the prior's own `build_input_ids`, which checks ids and labels.
        tokens = config.token_layout.unflatten(torch.from_numpy(ids), *config.image_size)
        labels = torch.from_numpy(labels) if config.num_classes and labels is not None else None
        input_ids = self.model.build_input_ids(tokens, labels)
        dataloader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(input_ids),
            batch_size=args.train_batch_size,
            shuffle=True,  # accelerate swaps in a seedable sampler: set_epoch reshuffles, resume replays exactly
            drop_last=True,
            num_workers=args.dataloader_num_workers,
            collate_fn=_collate,
            # Its own generator: a new iterator otherwise draws a seed from the global RNG, which class dropout
            # also uses, and a resumed run makes its iterator at another point of the stream than the first run.
            generator=torch.Generator().manual_seed(args.seed),
        )
        splits = info.get("splits", {})
        self.eval_split = args.eval_split or next((s for s in ("validation", "test") if s in splits), None)
        if self.eval_split is not None:
            held_out = token_files.load_tokens(args.tokens, self.eval_split)
            eval_ids, eval_labels = token_files.token_arrays(held_out, unflipped_only=True)
            n = min(args.num_eval_examples, len(eval_ids))
            self.eval_tokens = torch.from_numpy(eval_ids[:n])  # flattened, as `prior_nll` takes them
            self.eval_labels = None if eval_labels is None else torch.from_numpy(eval_labels[:n])
        else:
            logger.warning("%s has no validation/test split: no held-out NLL (give --eval-split).", args.tokens)
        self.tokenizer.to(accelerator.device)
        description = f"{args.tokens} ({args.train_split}, {len(input_ids)} sequences of {config.sequence_length} ids)"
        return TrainData(dataloader, description, len(input_ids))

    # -------------------------------------------------------------------------------------------- steps

    def train_step(self, accelerator, models: list[nn.Module], batch: dict, step: int) -> TaskStep:
        input_ids = batch["input_ids"]
        with accelerator.autocast():
            loss = models[0](input_ids=input_ids, labels=input_ids).loss
        logs = {"loss": loss, "bits_per_token": loss / math.log(2)}
        return TaskStep([loss], logs, int(input_ids.shape[0]))

    def pipeline(self, prior: VQPriorForCausalLM):
        from ..pipelines import VQImagePipeline

        pipe = VQImagePipeline(vqvae=self.tokenizer, transformer=prior)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def sample_grid(self, prior: VQPriorForCausalLM):
        args, config = self.args, prior.config
        labels = list(range(min(config.num_classes, 10))) or None  # at most 10 rows
        was_training = prior.training
        prior.eval()
        generator = torch.Generator(prior.device).manual_seed(GRID_SEED)  # not the global RNG: resume stays exact
        images = sample_images(
            self.pipeline(prior), labels, args.num_samples_per_class, args.sample_guidance_scale, generator
        )
        prior.train(was_training)
        return image_grid(images, args.num_samples_per_class)

    def evaluate(self, run: Run) -> dict | None:
        if self.eval_tokens is None:
            return None
        # `hf-vq evaluate-prior`'s NLL: per image token, softmax over each position's id range, as in sampling.
        nll = prior_nll(run.sample_model(), self.eval_tokens, self.eval_labels, batch_size=EVAL_BATCH_SIZE)
        self.last_eval = nll
        logs = {"eval/nats_per_token": nll["nats_per_token"], "eval/bits_per_token": nll["bits_per_token"]}
        run.accelerator.log(logs, step=run.state.global_step)
        logger.info("step %d held-out NLL %.4f nats (%.4f bits) per token", run.state.global_step,
                    nll["nats_per_token"], nll["bits_per_token"])  # fmt: skip
        return self.last_eval

    def watch(self, run: Run) -> None:
        args, step = self.args, run.state.global_step
        if not run.accelerator.is_main_process:
            return
        if args.image_logging_steps and step % args.image_logging_steps == 0:
            grid = self.sample_grid(run.sample_model())
            path = run.output_dir / "samples" / f"step-{step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            grid.save(path)
            log_grid(run.accelerator, np.asarray(grid.convert("RGB")), step)
        if args.eval_steps and step % args.eval_steps == 0:
            self.evaluate(run)

    # -------------------------------------------------------------------------------------------- the end

    def save(self, run: Run) -> None:
        """The pipeline folder (EMA weights when enabled), the final grid, the held-out NLL and the card, written
        into the loop's staging folder (moved into the output folder once complete)."""
        output_dir, prior = run.save_dir, run.sample_model()
        self.pipeline(prior).save_pretrained(output_dir)
        self.sample_grid(prior).save(output_dir / SAMPLES_NAME)
        results = self.evaluate(run)
        if results is not None:
            entry = {**results, "split": self.eval_split, "num_sequences": int(self.eval_tokens.shape[0])}
            (output_dir / EVAL_RESULTS_NAME).write_text(json.dumps(entry, indent=2) + "\n")
        write_pipeline_card(output_dir, prior, self.info, run.training_recipe(), results, self.args)

    def upload(self, folder: Path, repo_id: str, private: bool | None):
        """The pipeline folder (`model_index.json`, `vqvae/`, `transformer/`, card, grid, NLL) in one commit."""
        from ..hub.push import push_pipeline_folder

        return push_pipeline_folder(folder, repo_id, private=private, extra=UPLOADED_FILES)

    def report(self, run: Run, seconds: float) -> None:
        """Where the pipeline is and how to use it, logged (INFO on the main process, as the loop set it up)."""
        output_dir = run.output_dir
        nll = f", held-out NLL {self.last_eval['nats_per_token']:.4f} nats/token" if self.last_eval else ""
        lines = [
            f"Done: {run.state.global_step} steps in {seconds / 60:.1f} min{nll}.",
            f"Pipeline: {output_dir} (sample grid {output_dir / SAMPLES_NAME})",
            f"Generate: hf-vq generate {output_dir} --num-images 8 --guidance-scale 2 --output grid.png",
            f"TensorBoard: tensorboard --logdir {output_dir / 'logs'}",
        ]
        logger.info("\n".join(lines))


def write_pipeline_card(output_dir: Path, prior, info: dict, training: dict, results: dict | None, args) -> Path:
    """README.md of the pipeline folder: what it generates, how to run it, how it was trained, how it scores."""
    from huggingface_hub import ModelCard, ModelCardData

    config = prior.config
    classes = f"{config.num_classes} classes" if config.num_classes else "unconditional"
    names = ", ".join(str(config.id2label[i]) for i in range(config.num_classes)) if config.has_class_names else ""
    source = token_files.load_tokens_info(args.tokens).get("splits", {}).get(args.train_split, {}).get("dataset")
    data = ModelCardData(
        library_name="hf-vq",
        pipeline_tag="unconditional-image-generation",
        tags=["hf-vq", "vq-prior", "image-generation", "class-conditional" if config.num_classes else "unconditional"],
        license="apache-2.0",
    )
    millions = sum(p.numel() for p in prior.parameters()) / 1e6
    rows = "\n".join(f"| {k} | {v} |" for k, v in training.items())
    measured = ""
    if results is not None:
        measured = (
            f"\n## Evaluation\n\nHeld-out NLL on the token set's held-out split: **{results['nats_per_token']:.4f} "
            f"nats/token** ({results['bits_per_token']:.4f} bits/token), per image token, the softmax at each "
            "position taken over that position's id range (as in sampling; `hf-vq evaluate-prior` measures the "
            "same).\n"
        )
    first = "class_labels=[0]" if config.num_classes else "class_labels=None"
    content = f"""---
{data.to_yaml()}
---

# {output_dir.resolve().name}

An image generator from [hf-vq](https://github.com/): a {millions:.1f}M-parameter Llama prior (`VQPriorForCausalLM`,
{config.num_hidden_layers} layers, width {config.hidden_size}, positions `{config.position_embedding}`) over the
{config.sequence_length} token ids of {config.image_size[0]}x{config.image_size[1]} images of the tokenizer in
`vqvae/` ({info.get("tokenizer_class")}, from `{info.get("tokenizer")}`), {classes}{f" ({names})" if names else ""}.
Trained on tokens of {source or args.tokens}.

![samples]({SAMPLES_NAME})

*One row per class (up to 10), guidance scale {args.sample_guidance_scale:g}, after {training.get("steps")} steps.*

## Usage

```python
import hf_vq, torch
from hf_vq.pipelines import VQImagePipeline

pipe = VQImagePipeline.from_pretrained("{output_dir}")
images = pipe({first}, num_images_per_prompt=8, guidance_scale=2.0,
              generator=torch.Generator().manual_seed(0)).images
```

or `hf-vq generate {output_dir} --num-images 8 --guidance-scale 2 --output grid.png`.
{measured}
## Training

| | |
|---|---|
{rows}
"""
    path = output_dir / "README.md"
    ModelCard(content).save(path)
    return path


def train_prior(args: PriorArguments) -> int:
    """Runs `hf-vq train-prior` with parsed arguments. Returns 0, or 1 if stopped by non-finite losses."""
    output_dir = Path(args.output_dir)
    finished = (output_dir / "model_index.json").is_file()
    if finished and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        raise FileExistsError(
            f"{output_dir} already holds a trained pipeline. Continue its run with --resume-from-checkpoint "
            "latest, start afresh with --overwrite-output-dir, or pick another --output-dir."
        )
    return run_training(args, PriorTask(args))


def main(argv: list[str] | None = None) -> int:
    """`hf-vq train-prior ARGS`. Errors propagate: `hf_vq.cli` turns them into one-paragraph messages."""
    return train_prior(parse_args(argv, PriorArguments, prog="hf-vq train-prior", description=PRIOR_DESCRIPTION))


if __name__ == "__main__":
    from ..cli import main as cli_main  # the command line's error handling (--debug), for `python -m` too

    sys.exit(cli_main(["train-prior", *sys.argv[1:]]))
