"""`hf-vq train-prior`: train a prior of any registered family (`--prior-type`, `prior_types.PRIOR_TYPES`) over a
token set made by `hf-vq tokenize`.

The prior task, plugged into the shared loop (`loop.py`: mixed precision, accumulation, EMA, atomic checkpoints,
exact resume, TensorBoard, push). It calls the prior only through the prior interface (`hf_vq.modeling.VQPriorMixin`)
and never names a family:

    build_models      a fresh `config_class.from_tokenizer(...)` of the family, sized by the flags, or `--init-from` a
                      saved prior, checked and its class table fitted to the token set's classes (`prior_init.py`);
                      the tokenizer is loaded (frozen) to check its config hash and to decode sample grids
    build_data        the token set in memory, made into model input rows by the prior's own `build_input_ids`, a
                      seeded shuffling loader; held-out original views for the held-out score
    train_step        the loss of `forward(**prior.training_inputs(batch))` (the causal family: cross-entropy on the
                      image ids, class dropout inside its forward)
    watch / save      every N steps a grid of generated images per class and the family's held-out score
                      (`held_out_score`: for the causal family the NLL `hf-vq evaluate-prior` reports); at the end a
                      `VQImagePipeline` folder (`model_index.json`, `vqvae/`, `transformer/`), `samples.png` and a
                      README.md card rendered from `model_cards/vq_prior.md`
    push / report     with --push-to-hub the pipeline folder goes up in one commit; the summary is logged

The output folder is a pipeline: `VQImagePipeline.from_pretrained(output_dir)` or `hf-vq generate output_dir`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import tokens as token_files
from ..data.images import image_grid
from ..evaluation.generation import held_out_score
from ..hub.prior_cards import write_pipeline_card
from ..loading import load_tokenizer
from ..modeling import VQPriorMixin
from ..modeling.tokenizer_identity import tokenizer_config_hash, weights_hash_differs
from ..pipelines.sampling import sample_images
from .arguments import parse_json_or_file
from .loop import run_training
from .monitoring import counted, log_grid
from .prior_arguments import PriorArguments
from .prior_init import ClassTable, load_prior_to_fine_tune
from .prior_types import PRIOR_TYPES, prior_type_of
from .sharding import is_sharded, unsharded_model
from .task import Run, Task, TaskStep, Trainable, TrainData

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


def check_token_set_tokenizer(tokenizer, source: str, info: dict, tokens: str) -> None:
    """Raises a `ValueError` naming both tokenizers when `tokenizer` (loaded from `source`) is not the one the token
    set `tokens` was made with: another config, or the same config with other encoder or codebook weights (a token
    set made before the weights were recorded has its config checked only)."""
    received = tokenizer_config_hash(tokenizer)
    fix = "Pass that tokenizer with --tokenizer, or tokenize again with this one."
    if received != info["tokenizer_config_hash"]:
        raise ValueError(
            f"The tokenizer {source} (config hash {received}) is not the one the token set {tokens} was made with "
            f"({info['tokenizer']}, config hash {info['tokenizer_config_hash']}). {fix}"
        )
    differs = weights_hash_differs(tokenizer, info.get("tokenizer_weights_hash"))
    if differs is not None:
        raise ValueError(
            f"The tokenizer {source} has the config of the one the token set {tokens} was made with "
            f"({info['tokenizer']}) but other encoder or codebook weights (digest {differs[0]}; recorded "
            f"{differs[1]}): its ids mean other codes. {fix} A tokenizer whose decoder alone was fine-tuned "
            "(--freeze-encoder --freeze-codebook) keeps the ids and is accepted."
        )
    if not info.get("tokenizer_weights_hash"):
        logger.warning(
            "%s records its tokenizer's config but not its weights (made by an older hf-vq): the config is checked, "
            "the encoder and codebook weights are not. Tokenize it again to record them.",
            tokens,
        )


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
        self.model: VQPriorMixin | None = None
        self.eval_tokens: torch.Tensor | None = None  # (N, L) held-out ids, flattened as the token set stores them
        self.eval_labels: torch.Tensor | None = None
        self.eval_split: str | None = None
        self.last_eval: dict | None = None
        self.class_table: ClassTable | None = None  # --init-from: the token set's labels as the prior's class rows

    # -------------------------------------------------------------------------------------------- models

    def build_models(self) -> list[Trainable]:
        args, info = self.args, self.info
        source = args.tokenizer or info["tokenizer"]
        self.tokenizer = load_tokenizer(source, flag="--tokenizer" if args.tokenizer else "tokenizer")
        check_token_set_tokenizer(self.tokenizer, source, info, args.tokens)
        if args.init_from is not None:  # checked, its class table fitted to the token set's (prior_init.py)
            self.model, self.class_table = load_prior_to_fine_tune(args, info, self.tokenizer, self.check_family)
        else:
            self.model = PRIOR_TYPES[args.prior_type].model_class(self.prior_config(source))
        self.model.train()
        return [Trainable("prior", self.model, args.learning_rate, folder="transformer")]

    def check_family(self, prior: VQPriorMixin) -> None:
        """Raises a `ValueError` when the prior loaded with --init-from is not of the --prior-type family."""
        args, family = self.args, prior_type_of(prior)
        if family is None:
            raise ValueError(
                f"--init-from {args.init_from} holds a {type(prior).__name__}, which is no registered prior family "
                f"(--prior-type is one of {list(PRIOR_TYPES)}). Register its family in "
                "hf_vq.training.prior_types.PRIOR_TYPES before training it."
            )
        if family != args.prior_type:
            raise ValueError(
                f"--init-from {args.init_from} holds a {family!r} prior ({type(prior).__name__}); --prior-type is "
                f"{args.prior_type!r}. Pass --prior-type {family} to fine-tune it, or leave --init-from out to train "
                f"a new {args.prior_type!r} prior."
            )

    def prior_config(self, tokenizer_source: str):
        """A new config of the --prior-type family for the token set's tokenizer, sized by the flags."""
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
        return PRIOR_TYPES[args.prior_type].config_class.from_tokenizer(
            self.tokenizer,
            image_size=info["image_size"],
            num_classes=num_classes,
            tokenizer_name_or_path=tokenizer_source,
            **fields,
        )

    # -------------------------------------------------------------------------------------------- data

    def build_data(self, accelerator) -> TrainData:
        args, info, config = self.args, self.info, self.model.config
        train = token_files.load_tokens(args.tokens, args.train_split)
        ids, labels = token_files.token_arrays(train, unflipped_only=not args.use_flipped)
        # Model input rows by the prior's own `build_input_ids`, which checks ids and labels.
        tokens = config.token_layout.unflatten(torch.from_numpy(ids), *config.image_size)
        labels = self.prior_labels(labels) if config.num_classes else None
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
            self.eval_tokens = torch.from_numpy(eval_ids[:n])  # flattened, as `held_out_score` takes them
            self.eval_labels = None if eval_labels is None else self.prior_labels(eval_labels[:n])
        else:
            logger.warning("%s has no validation/test split: no held-out score (give --eval-split).", args.tokens)
        self.tokenizer.to(accelerator.device)
        description = f"{args.tokens} ({args.train_split}, {len(input_ids)} sequences of {config.sequence_length} ids)"
        return TrainData(dataloader, description, len(input_ids))

    def prior_labels(self, labels: np.ndarray | None) -> torch.Tensor | None:
        """The token set's labels as the prior's class ids (the fitted class table's rows after --init-from)."""
        if labels is None:
            return None
        labels = torch.from_numpy(labels)
        return self.class_table.map_labels(labels) if self.class_table is not None else labels

    # -------------------------------------------------------------------------------------------- steps

    def train_step(self, accelerator, models: list[nn.Module], batch: dict, step: int) -> TaskStep:
        input_ids = batch["input_ids"]
        with accelerator.autocast():
            # Through the prepared module (its forward syncs gradients across processes); the family says what the
            # forward of a training batch takes.
            loss = models[0](**self.model.training_inputs(input_ids)).loss
        logs = {"loss": loss, "bits_per_token": loss / math.log(2)}
        return TaskStep([loss], logs, int(input_ids.shape[0]))

    def pipeline(self, prior: VQPriorMixin):
        from ..pipelines import VQImagePipeline

        pipe = VQImagePipeline(vqvae=self.tokenizer, transformer=prior)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def sample_grid(self, prior: VQPriorMixin):
        args, config = self.args, prior.config
        # At most 10 rows: the token set's classes (a fine-tuned prior may know many more).
        rows = self.class_table.label_map if self.class_table is not None else range(config.num_classes)
        labels = list(rows)[:10] or None
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
        # The family's held-out score; for the causal family `hf-vq evaluate-prior`'s NLL: per image token, softmax
        # over each position's id range, as in sampling.
        score = held_out_score(run.sample_model(), self.eval_tokens, self.eval_labels, batch_size=EVAL_BATCH_SIZE)
        self.last_eval = score
        # The NLL keeps its chart names; another family's score gets its own, never drawn on the NLL's axes.
        prefix = "eval/" if score["metric"] == "nll" else f"eval/{score['metric']}/"
        logs = {f"{prefix}nats_per_token": score["nats_per_token"], f"{prefix}bits_per_token": score["bits_per_token"]}
        run.accelerator.log(logs, step=run.state.global_step)
        name, step = _score_name(score), run.state.global_step
        logger.info(
            "step %d %s %.4f nats (%.4f bits) per token", step, name, score["nats_per_token"], score["bits_per_token"]
        )
        return self.last_eval

    def watch(self, run: Run) -> None:
        args, step = self.args, run.state.global_step
        grid_due = args.image_logging_steps and step % args.image_logging_steps == 0
        eval_due = args.eval_steps and step % args.eval_steps == 0
        if (grid_due or eval_due) and is_sharded(run.accelerator):  # every rank sends its shards (sharding.py)
            run.unsharded = unsharded_model(run.accelerator, run.model)
        try:
            if not run.accelerator.is_main_process:
                return
            if grid_due:
                grid = self.sample_grid(run.sample_model())
                path = run.output_dir / "samples" / f"step-{step:07d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                grid.save(path)
                log_grid(run.accelerator, np.asarray(grid.convert("RGB")), step)
            if eval_due:
                self.evaluate(run)
        finally:
            run.unsharded = None

    # -------------------------------------------------------------------------------------------- the end

    def save(self, run: Run) -> None:
        """The pipeline folder (EMA weights when enabled), the final grid, the held-out score and the card, written
        into the loop's staging folder (moved into the output folder once complete)."""
        output_dir, prior = run.save_dir, run.sample_model()
        self.pipeline(prior).save_pretrained(output_dir)
        self.sample_grid(prior).save(output_dir / SAMPLES_NAME)
        results = self.evaluate(run)
        if results is not None:
            entry = {**results, "split": self.eval_split, "num_sequences": int(self.eval_tokens.shape[0])}
            (output_dir / EVAL_RESULTS_NAME).write_text(json.dumps(entry, indent=2) + "\n")
        split = self.info.get("splits", {}).get(self.args.train_split, {})
        write_pipeline_card(
            output_dir,
            prior,
            # The folder the user gets (the card is written in the staging folder, moved there once complete).
            title=run.output_dir.resolve().name,
            model_id=str(run.output_dir),
            tokenizer_class=self.info.get("tokenizer_class"),
            tokenizer=self.info.get("tokenizer"),
            dataset=split.get("dataset") or self.args.tokens,
            training=run.training_recipe(),
            results=results,
            grid=SAMPLES_NAME,
            guidance_scale=self.args.sample_guidance_scale,
        )

    def upload(self, folder: Path, repo_id: str, private: bool | None):
        """The pipeline folder (`model_index.json`, `vqvae/`, `transformer/`, card, grid, score) in one commit."""
        from ..hub.push import push_pipeline_folder

        return push_pipeline_folder(folder, repo_id, private=private, extra=UPLOADED_FILES)

    def report(self, run: Run, seconds: float) -> None:
        """Where the pipeline is and how to use it, logged (INFO on the main process, as the loop set it up)."""
        output_dir = run.output_dir
        score = self.last_eval
        measured = f", {_score_name(score)} {score['nats_per_token']:.4f} nats/token" if score else ""
        lines = [
            f"Done: {counted(run.state.global_step, 'step')} in {seconds / 60:.1f} min{measured}.",
            f"Pipeline: {output_dir} (sample grid {output_dir / SAMPLES_NAME})",
            f"Generate: hf-vq generate {output_dir} --num-images 8 --guidance-scale 2 --output grid.png",
            f"TensorBoard: tensorboard --logdir {output_dir / 'logs'}",
        ]
        logger.info("\n".join(lines))


def _score_name(score: dict) -> str:
    """`held-out NLL`, or `held-out <metric>` for a family whose score is not an NLL."""
    return "held-out NLL" if score["metric"] == "nll" else f"held-out {score['metric']}"


def train_prior(args: PriorArguments) -> int:
    """Runs `hf-vq train-prior` with parsed arguments. Returns 0, or 1 if stopped by non-finite losses."""
    output_dir = Path(args.output_dir)
    finished = (output_dir / "model_index.json").is_file()
    if finished and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        raise FileExistsError(
            f"{output_dir} already holds a trained pipeline. Train it further with --resume-from-checkpoint "
            "latest and a larger --max-train-steps, start afresh with --overwrite-output-dir, or pick another "
            "--output-dir."
        )
    return run_training(args, PriorTask(args))
