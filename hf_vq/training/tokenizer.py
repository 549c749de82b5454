"""`hf-vq train`: train or fine-tune an image tokenizer (VQ-GAN, VQ-VAE) from a `datasets` stream.

The tokenizer task, plugged into the shared loop (`loop.py`, which reads it through the [`Task`] hooks):

    build_models      a registered `--model-type` from scratch, or `--init-from` a Hub id / folder; freezing;
                      the discriminator when the type is adversarial (`tokenizer_types.TOKENIZER_TYPES`)
    build_data        the training stream (`hf_vq.data`), held-out images for the grid and evaluation
    build_objective   the VQ-GAN objective (`hf_vq.losses.VQGANLoss`) on a schedule scaled to the run, or none:
                      a tokenizer without a discriminator trains on its own loss (reconstruction + codebook)
    train_step        forward, the generator's loss, the discriminator's loss when it trains
    watch / save      sample grids and evaluation every N steps (`monitoring.py`); the final model (EMA weights),
                      its discriminator, samples.png and a model card

The same command runs on one CPU, one GPU or many (`accelerate launch --multi_gpu ...`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from ..data import BUILTIN_DESCRIPTION, build_train_dataloader, build_train_stream, load_eval_images
from ..loading import load_model
from ..losses import VQGANLoss
from ..modeling import BaseQuantizer, VQGANDiscriminator, VQGANDiscriminatorConfig
from ..modeling.configuration_utils import RECOMMENDED_QUANTIZER_FIELDS
from .arguments import parse_json_or_file
from .loop import run_training
from .monitoring import SAMPLES_NAME, eval_results, evaluate, log_grid, log_summary, save_grid
from .objective import build_objective, default_adam_beta1, describe_losses, gan_is_off
from .task import Run, Task, TaskStep, Trainable, TrainData
from .tokenizer_arguments import TrainArguments
from .tokenizer_types import DEFAULT_DISCRIMINATOR_CONFIG, TOKENIZER_TYPES, TokenizerType

logger = logging.getLogger(__name__)

# Keys a saved config.json holds besides the config's fields (where and how it was saved): a `--model-config` that
# points at a saved model's config.json may carry them.
SAVED_CONFIG_KEYS = {
    "model_type",
    "transformers_version",
    "architectures",
    "auto_map",
    "dtype",
    "torch_dtype",
    "_name_or_path",
    "output_attentions",
}


def tokenizer_type_of(model: nn.Module) -> TokenizerType:
    """The registry entry of a (loaded) model: how it is trained and frozen."""
    for entry in TOKENIZER_TYPES.values():
        if isinstance(model, entry.model_class):
            return entry
    raise ValueError(
        f"--init-from loaded a {type(model).__name__}, which is not a registered tokenizer; expected one of "
        f"{[e.model_class.__name__ for e in TOKENIZER_TYPES.values()]} "
        "(hf_vq.training.tokenizer_types.TOKENIZER_TYPES)."
    )


def new_model_config(entry: TokenizerType, args: TrainArguments):
    """The config of a model trained from scratch: the type's small default (`sample_size` from `--resolution`) with
    the fields `--model-config` gives on top, checked field by field, with the recommended quantizer options (k-means
    init, dead-code restarts) where they apply. A config.json written by `save_pretrained` (it names its
    `model_type`) describes a whole model: it is taken as it is, over the config class's own defaults."""
    import dataclasses
    import difflib

    overrides = parse_json_or_file(args.model_config, "--model-config") if args.model_config else {}
    if "model_type" in overrides:  # a saved config.json: its left-out fields are at the config class's defaults
        fields = {"sample_size": args.resolution, **overrides}
    else:
        defaults = dict(entry.defaults)
        if "block_out_channels" in overrides:  # per-level lists follow the levels: the config derives them anew
            for key in ("down_block_types", "up_block_types"):
                if key not in overrides:
                    defaults.pop(key, None)
        fields = {**defaults, "sample_size": args.resolution, **overrides}
    known = {f.name for f in dataclasses.fields(entry.config_class)} | SAVED_CONFIG_KEYS
    for key in fields:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ValueError(f"--model-config: `{key}` is not a field of {entry.config_class.__name__}.{hint}")
    if fields.get("model_type", entry.config_class.model_type) != entry.config_class.model_type:
        kinds = {e.config_class.model_type: name for name, e in TOKENIZER_TYPES.items()}
        other = kinds.get(fields["model_type"], fields["model_type"])
        raise ValueError(f"--model-config describes a {other} model; give --model-type {other} as well.")
    fields.pop("model_type", None)
    # K-means init and dead-code restarts act on a learned codebook: FSQ and LFQ have none, and reject them.
    default_type = next(f.default for f in dataclasses.fields(entry.config_class) if f.name == "quantizer_type")
    if fields.get("quantizer_type", default_type) in ("vq", "residual_vq"):
        fields = {**RECOMMENDED_QUANTIZER_FIELDS, **fields}
    else:  # the main job's learned-codebook options (low-dim l2 codes) do not apply either, unless asked for
        for key in ("codebook_dim", "codebook_l2_norm", "codebook_update", "gradient_estimator"):
            if key not in overrides:
                fields.pop(key, None)
    try:
        config = entry.config_class(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--model-config: {' '.join(str(error).split())}") from None
    source = f"the main job's {args.model_type}" + (" with --model-config on top" if args.model_config else "")
    logger.info(
        "Model config (%s; the fields that differ from %s's defaults): %s",
        source,
        entry.config_class.__name__,
        json.dumps(config_differences(config)),
    )
    return config


def config_differences(config) -> dict:
    """The fields of `config` that differ from its class's defaults: what makes this model this model."""
    ours, defaults = config.to_dict(), type(config)().to_dict()
    skip = SAVED_CONFIG_KEYS
    return {k: v for k, v in ours.items() if k not in skip and defaults.get(k, object()) != v}


def build_models(args: TrainArguments) -> tuple[nn.Module, nn.Module | None]:
    """The tokenizer and, for an adversarial type, its discriminator: fresh, or loaded with `--init-from`."""
    discriminator = None
    if args.init_from is not None:
        model = load_model(args.init_from, flag="--init-from")
        # The base model's card (recipe, results) describes the base model: this run writes its own at the end.
        model.card_info = None
        entry = tokenizer_type_of(model)
        if entry.adversarial:
            try:
                discriminator = VQGANDiscriminator.from_pretrained(args.init_from, subfolder="discriminator")
                logger.info("Loaded the discriminator of %s", args.init_from)
            except OSError:
                logger.info("%s has no discriminator/ subfolder: a fresh discriminator.", args.init_from)
    else:
        # New models get the measured-best quantizer options (k-means init + dead-code restart) unless the config
        # sets them; models loaded with --init-from keep theirs (k-means would overwrite a trained codebook).
        entry = TOKENIZER_TYPES[args.model_type]
        model = entry.model_class(new_model_config(entry, args))
    if entry.adversarial and discriminator is None:
        overrides = {}
        if args.discriminator_config:
            overrides = parse_json_or_file(args.discriminator_config, "--discriminator-config")
        fields = {**DEFAULT_DISCRIMINATOR_CONFIG, "in_channels": model.config.out_channels, **overrides}
        try:
            discriminator = VQGANDiscriminator(VQGANDiscriminatorConfig(**fields))
        except (TypeError, ValueError) as error:
            raise ValueError(f"--discriminator-config: {' '.join(str(error).split())}") from None
    if args.freeze_encoder:
        for name in entry.encoder_modules:
            getattr(model, name).requires_grad_(False)
    if args.freeze_codebook:
        for module in model.modules():
            if isinstance(module, BaseQuantizer):
                module.freeze_codebook()
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("Every parameter is frozen: drop --freeze-encoder or --freeze-codebook.")
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()  # transformers 5.24 deprecates gradient_checkpointing_enable
    model.train()
    if discriminator is not None:
        discriminator.train()
    return model, discriminator


class TokenizerTask(Task):
    """Trains one tokenizer (and its discriminator, for an adversarial type) with `hf-vq train`'s arguments."""

    command = "hf-vq train"
    example_name = "images"
    progress_keys = ("loss", "reconstruction_loss", "perceptual_loss", "gan_loss", "codebook_usage")
    output_names = (
        "config.json",
        "model.safetensors",
        "README.md",
        "card_info.json",
        SAMPLES_NAME,
        "samples",
        "discriminator",
    )

    def __init__(self, args: TrainArguments):
        self.args = args
        self.model: nn.Module | None = None
        self.discriminator: nn.Module | None = None
        self.objective: VQGANLoss | None = None  # None: the model's own loss (a tokenizer without a discriminator)
        self.gan_off = False  # a short run with --discriminator-start unset: pixel + LPIPS + codebook only
        self.discriminator_trains = False  # at some step of this run; else it is saved only if it was loaded
        self.eval_images: torch.Tensor | None = None  # held-out images: evaluation and the sample grid
        self.grid_images: torch.Tensor | None = None  # the grid's: eval_images, else training images

    def build_models(self) -> list[Trainable]:
        args = self.args
        self.model, self.discriminator = build_models(args)
        trainables = [Trainable("generator", self.model, args.learning_rate, folder="model")]
        if self.discriminator is not None:
            rate = args.discriminator_learning_rate or args.learning_rate
            trainables.append(Trainable("discriminator", self.discriminator, rate))
        return trainables

    def build_data(self, accelerator) -> TrainData:
        args = self.args
        data = dict(
            pixel_range=tuple(self.model.config.pixel_range),
            dataset_config_name=args.dataset_config_name,
            image_column=args.image_column,
        )
        stream = build_train_stream(
            args.dataset_name,
            resolution=args.resolution,
            seed=args.seed,
            split=args.train_split,
            random_flip=args.random_flip,
            shuffle_buffer_size=args.shuffle_buffer_size,
            **data,
        )
        dataloader = build_train_dataloader(
            stream, args.train_batch_size, args.dataloader_num_workers, accelerator.num_processes
        )
        held_out = dict(num_images=args.num_eval_images, resolution=args.resolution, **data)
        eval_images, _ = load_eval_images(args.dataset_name, split=args.eval_split, **held_out)
        grid_images = eval_images
        if eval_images is None:  # no held-out split: the grid still shows (training) images, evaluation is off
            grid_images, _ = load_eval_images(args.dataset_name, split=args.train_split, **held_out)
        self.eval_images = eval_images.to(accelerator.device) if eval_images is not None else None
        self.grid_images = grid_images.to(accelerator.device) if grid_images is not None else None
        return TrainData(dataloader, stream.description, stream.num_examples)

    def build_objective(self, max_train_steps: int, device: torch.device) -> None:
        if self.discriminator is not None:
            self.objective = build_objective(self.args, self.model, max_train_steps).to(device)
            self.gan_off = gan_is_off(self.args, max_train_steps)
            self.discriminator_trains = self.objective.config.trains_discriminator(max_train_steps - 1)
            if self.gan_off:  # a column of zeros on the progress bar tells the user nothing
                self.progress_keys = tuple(key for key in type(self).progress_keys if key != "gan_loss")

    def adam_betas(self, args: TrainArguments) -> tuple[float, float]:
        """`--adam-beta1` unset: taming's 0.5 when the discriminator trains in this run (known once `build_objective`
        has fixed the GAN's schedule), else Adam's own 0.9. The loop builds the optimizers with the value returned
        and records it in training_args.json like any flag; `args` is left as given."""
        if args.adam_beta1 is not None:
            return args.adam_beta1, args.adam_beta2
        beta1 = default_adam_beta1(self.discriminator_trains)
        logger.info("Adam beta1 %s (%s).", beta1, "GAN on" if self.discriminator_trains else "no GAN")
        return beta1, args.adam_beta2

    def checkpointed(self) -> list[nn.Module]:
        # The LeCam anchors are moving averages across steps: a resumed run needs them.
        return [self.objective.lecam] if self.objective is not None and self.objective.lecam is not None else []

    def train_step(self, accelerator, models: list[nn.Module], batch: dict, step: int) -> TaskStep:
        pixel_values = batch["pixel_values"]
        examples, skipped = pixel_values.shape[0], batch.get("num_skipped", 0)
        objective = self.objective
        logs: dict[str, torch.Tensor] = {}
        if objective is not None:
            logs["gan_factor"] = torch.tensor(objective.config.gan_factor(step))
        if examples == 0:
            return TaskStep([], logs, 0, skipped)
        model = models[0]
        with accelerator.autocast():
            output = model(pixel_values)
        logs.update(codebook_usage=output.codebook_usage, perplexity=output.perplexity)
        if objective is None:  # the model's own loss: reconstruction + codebook + commitment
            logs.update(loss=output.loss, reconstruction_loss=output.reconstruction_loss)
            logs.update(quantizer_loss=output.quantizer_loss)
            return TaskStep([output.loss], logs, examples, skipped)

        discriminator = models[1]
        with accelerator.autocast():
            g = objective.generator_loss(
                pixel_values,
                output.reconstruction,
                discriminator=accelerator.unwrap_model(discriminator),
                step=step,
                last_layer=accelerator.unwrap_model(model).get_last_layer(),
                quantizer_loss=output.quantizer_loss,
                reconstruction_loss=output.reconstruction_loss,  # the forward's: not computed twice
            )
        logs.update(
            loss=g.loss,
            reconstruction_loss=g.reconstruction_loss,
            perceptual_loss=g.perceptual_loss,
            gan_loss=g.gan_loss,
            gan_weight=g.gan_weight,  # adaptive weight x disc_weight x ramp: what multiplies gan_loss
            quantizer_loss=g.quantizer_loss,
        )
        scale = objective.config.disc_weight * g.gan_factor
        logs["adaptive_weight"] = g.gan_weight / scale if scale > 0 else torch.zeros_like(g.gan_weight)
        losses = [g.loss]
        if objective.config.trains_discriminator(step):
            with accelerator.autocast():
                d = objective.discriminator_loss(pixel_values, output.reconstruction, discriminator=discriminator)
            losses.append(d.loss)
            logs.update(d_loss=d.loss, d_logits_real=d.logits_real, d_logits_fake=d.logits_fake)
            if objective.config.lecam_weight > 0:
                logs["d_lecam_loss"] = d.lecam_loss
            if objective.config.r1_weight > 0:
                logs["d_r1_loss"] = d.r1_loss
        return TaskStep(losses, logs, examples, skipped)

    def watch(self, run: Run) -> None:
        """Every N steps, on the main process: the sample grid and the held-out evaluation."""
        args, step = self.args, run.state.global_step
        if not run.accelerator.is_main_process:
            return
        if args.image_logging_steps and step % args.image_logging_steps == 0 and self.grid_images is not None:
            path = run.output_dir / "samples" / f"step-{step:07d}.png"
            log_grid(run.accelerator, save_grid(run.sample_model(), self.grid_images, path), step)
        if args.eval_steps and step % args.eval_steps == 0 and self.eval_images is not None:
            metrics = evaluate(run.sample_model(), self.eval_images)
            run.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
            logger.info("step %d eval: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def save(self, run: Run) -> None:
        """The final model (EMA weights when enabled), its discriminator, a sample grid and a model card, into
        `run.save_dir` (the staging folder the loop moves into the output folder once complete)."""
        output_dir, final_model = run.save_dir, run.sample_model()
        results = None
        if self.grid_images is not None:
            save_grid(final_model, self.grid_images, output_dir / SAMPLES_NAME)
        if self.eval_images is not None:
            metrics = evaluate(final_model, self.eval_images)
            run.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=run.state.global_step)
            results = eval_results(self.args, metrics, int(self.eval_images.shape[0]))
        final_model.card_info = self.card_info(run, results)
        final_model.save_pretrained(output_dir)
        # A discriminator that never trained is random weights: saving it would pass them off as trained to a
        # later `--init-from`. One loaded with `--init-from` (it has a `name_or_path`) goes on with the model.
        if self.discriminator is not None and (self.discriminator_trains or self.discriminator.name_or_path):
            run.accelerator.unwrap_model(run.models[1]).save_pretrained(output_dir / "discriminator")

    def card_info(self, run: Run, results: dict | None) -> dict:
        """`model.card_info` for `save_pretrained`: the recipe, the data, the grid and the final evaluation."""
        args, steps = self.args, run.state.global_step
        losses = describe_losses(args, self.model, self.objective, self.gan_off)
        training = run.training_recipe(image_size=args.resolution, losses=losses)
        if args.init_from:
            choices = (("encoder", args.freeze_encoder), ("codebook", args.freeze_codebook))
            frozen = [name for name, on in choices if on]
            training["fine_tuned_from"] = args.init_from + (f" ({' and '.join(frozen)} frozen)" if frozen else "")
        info = {"training": training, "datasets": [args.dataset_name or BUILTIN_DESCRIPTION]}
        info["model_id"] = str(run.output_dir)  # the folder the card's snippets load from, not the staging folder
        if args.init_from and not Path(args.init_from).exists():
            info["base_model"] = args.init_from
        if self.grid_images is not None:
            info["grid"] = SAMPLES_NAME
            shown = "Held-out images"
            if self.eval_images is None:
                shown = "Training images (the dataset has no held-out split)"
            info["grid_caption"] = f"{shown} (odd rows) and their reconstructions (even rows) after {steps} steps."
        if results is not None:
            info["results"] = results
        return info

    def report(self, run: Run, seconds: float) -> None:
        has_grid = self.grid_images is not None
        log_summary(self.args, run.output_dir, run.state, seconds, has_grid, type(run.sample_model()).__name__)


def train(args: TrainArguments) -> int:
    """Runs `hf-vq train` with parsed arguments. Returns 0, or 1 if the run was stopped by non-finite losses."""
    return run_training(args, TokenizerTask(args))
