"""`hf-vq train`: train or fine-tune a VQ-GAN / VQ-VAE with Accelerate, from a `datasets` stream.

Read top to bottom, the run is a sequence of named steps:

    args      = parse_args(argv)                          arguments.py: flags + --config file
    accelerator, output_dir                               one process per device, trackers, seeds
    model, discriminator                                  from scratch, or --init-from a Hub id / folder
    stream, max_train_steps                               data.py; the step budget before anything uses it
    optimizers, schedulers, ema, objective
    accelerator.prepare(models, optimizers, dataloader)   DDP, device placement, autocast, data sharding
    resume                                                load_state + replay the data stream to its position
    loop: train_step -> optimizer_step -> log / grid / eval / checkpoint
    finish: save_pretrained (EMA weights) + discriminator/ + samples.png + model card [+ push]

The same command runs on one CPU, one GPU or many (`accelerate launch --multi_gpu ...`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .arguments import TrainArguments, parse_args, parse_json_or_file, resolve_max_train_steps
from .checkpointing import list_checkpoints, register_checkpoint_hooks, resolve_resume_checkpoint, save_checkpoint
from .data import build_train_dataloader, build_train_stream, load_eval_images
from .monitoring import SAMPLES_NAME, card_info, eval_results, evaluate, log_grid, print_summary, save_grid

logger = logging.getLogger(__name__)

# The main job (`hf-vq train`, no arguments): a small f4 VQ-GAN that shows recognisable reconstructions of the
# built-in photos after a few hundred CPU steps. Any model of the family trains with --model-config.
DEFAULT_VQGAN_CONFIG = dict(
    block_out_channels=[32, 64, 64],
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    layers_per_block=1,
    latent_channels=16,
    vq_embed_dim=16,
    num_vq_embeddings=1024,
    # Low-dimensional, l2-normalised codes (ViT-VQGAN / LlamaGen) keep far more of the codebook in use in a short
    # run: 19% of K after 45 steps, against 1% with 16-d unnormalised codes. (RECOMMENDED_QUANTIZER_FIELDS, k-means
    # init and dead-code restarts, are added to every model trained from scratch: see `build_models`.)
    codebook_dim=8,
    codebook_l2_norm=True,
    norm_num_groups=8,
    sample_size=64,
)
DEFAULT_VQVAE_CONFIG = dict(
    hidden_channels=64, residual_hidden_channels=32, latent_channels=16, num_vq_embeddings=512, sample_size=64
)
DEFAULT_DISCRIMINATOR_CONFIG = dict(base_channels=32, num_layers=2, norm_num_groups=8)


@dataclass
class TrainingState:
    """What the loop itself must remember across a resume; checkpointed with `register_for_checkpointing`."""

    global_step: int = 0  # optimizer steps taken (skipped non-finite steps not included)
    micro_steps: int = 0  # batches consumed
    epochs: list[int] = field(default_factory=lambda: [0])  # per rank: current epoch of the data stream
    batches_in_epoch: list[int] = field(default_factory=lambda: [0])  # per rank: batches consumed in that epoch
    images_seen: int = 0  # all ranks together
    skipped_records: int = 0  # corrupt / non-image records dropped, all ranks together
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0
    ema_updates: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# ----------------------------------------------------------------------------------------------------------
# Set-up steps


def build_accelerator(args: TrainArguments):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    report_to = {"none": None, "all": ["tensorboard", "wandb"]}.get(args.report_to, [args.report_to])
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")),
        # Each rank reads its own shards (no batch dispatch from rank 0); seeded, resumable sampling.
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False, use_seedable_sampler=True),
        # Our schedules count optimizer steps: step them ourselves, once per real optimizer step.
        step_scheduler_with_optimizer=False,
    )


def prepare_output_dir(args: TrainArguments, accelerator) -> None:
    output_dir = Path(args.output_dir)
    existing = list_checkpoints(output_dir)
    has_model = (output_dir / "config.json").is_file()
    if (existing or has_model) and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        raise FileExistsError(
            f"{output_dir} already holds {'checkpoints' if existing else 'a trained model'} from an earlier run. "
            "Continue it with --resume-from-checkpoint latest, start afresh with --overwrite-output-dir, or pick "
            "another --output-dir."
        )
    if accelerator.is_main_process:
        if args.overwrite_output_dir and args.resume_from_checkpoint is None and output_dir.is_dir():
            for path in [*output_dir.glob("checkpoint-*"), output_dir / "logs", output_dir / "samples", output_dir / "discriminator"]:
                shutil.rmtree(path, ignore_errors=True)
            for name in ("config.json", "model.safetensors", "README.md", "card_info.json", SAMPLES_NAME):
                (output_dir / name).unlink(missing_ok=True)
        (output_dir / "samples").mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()


def build_models(args: TrainArguments):
    """The tokenizer and (for VQ-GAN) its discriminator: fresh, or loaded with `--init-from`."""
    from transformers import AutoModel

    from ..modeling import VQGANConfig, VQGANModel, VQVAEConfig, VQVAEModel
    from ..modeling.configuration_utils import RECOMMENDED_QUANTIZER_FIELDS
    from ..modeling.configuration_discriminator import VQGANDiscriminatorConfig
    from ..modeling.modeling_discriminator import VQGANDiscriminator

    discriminator = None
    if args.init_from is not None:
        model = AutoModel.from_pretrained(args.init_from)
        try:
            discriminator = VQGANDiscriminator.from_pretrained(args.init_from, subfolder="discriminator")
            logger.info("Loaded the discriminator of %s", args.init_from)
        except OSError:
            logger.info("%s has no discriminator/ subfolder: the discriminator starts from scratch.", args.init_from)
    else:
        overrides = parse_json_or_file(args.model_config, "--model-config") if args.model_config else {}
        defaults = DEFAULT_VQGAN_CONFIG if args.model_type == "vqgan" else DEFAULT_VQVAE_CONFIG
        # New models get the measured-best quantizer options (k-means init + dead-code restart) unless the config
        # sets them; models loaded with --init-from keep theirs (k-means would overwrite a trained codebook).
        fields = {**RECOMMENDED_QUANTIZER_FIELDS, **(overrides or {**defaults, "sample_size": args.resolution})}
        model = VQGANModel(VQGANConfig(**fields)) if args.model_type == "vqgan" else VQVAEModel(VQVAEConfig(**fields))
    is_gan = model.config.model_type == "hf_vq_vqgan"
    if is_gan and discriminator is None:
        overrides = parse_json_or_file(args.discriminator_config, "--discriminator-config") if args.discriminator_config else {}
        fields = {**DEFAULT_DISCRIMINATOR_CONFIG, "in_channels": model.config.out_channels, **overrides}
        discriminator = VQGANDiscriminator(VQGANDiscriminatorConfig(**fields))
    if args.freeze_encoder:
        model.encoder.requires_grad_(False)
        model.quant_conv.requires_grad_(False)
    if args.freeze_codebook:
        model.quantize.requires_grad_(False)
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()  # transformers 5.24 deprecates gradient_checkpointing_enable
    model.train()
    if discriminator is not None:
        discriminator.train()
    return model, discriminator


def build_objective(args: TrainArguments, model, max_train_steps: int):
    """VQ-GAN: `VQGANLoss` (pixel + LPIPS + adaptive-weight GAN, on a warm-up/ramp schedule). VQ-VAE: `model.loss`.

    Unset schedule flags scale with the run: the GAN switches on halfway, the discriminator pre-trains for a
    quarter of the run before that and the generator's GAN weight ramps in over a quarter after it (capped at
    the objective's own defaults, 10000 / 2000 / 2000 steps, for long runs).
    """
    if model.config.model_type != "hf_vq_vqgan":
        return None
    from ..modeling.losses import VQGANLoss, VQGANLossConfig

    defaults = VQGANLossConfig()
    disc_start = args.discriminator_start if args.discriminator_start is not None else min(defaults.disc_start, max_train_steps // 2)
    config = VQGANLossConfig(
        reconstruction_loss_type="l1" if model.config.reconstruction_loss_type == "l1" else "l2",
        perceptual_weight=defaults.perceptual_weight if args.perceptual_weight is None else args.perceptual_weight,
        disc_weight=defaults.disc_weight if args.discriminator_weight is None else args.discriminator_weight,
        disc_start=disc_start,
        disc_pretrain_steps=min(defaults.disc_pretrain_steps, max_train_steps // 4, disc_start),
        disc_ramp_steps=min(defaults.disc_ramp_steps, max(1, max_train_steps // 4)),
    )
    perceptual = None
    if config.perceptual_weight > 0:
        from ..modeling.lpips import load_lpips

        perceptual = load_lpips(args.perceptual_net)
    return VQGANLoss(config, perceptual=perceptual)


def build_optimizers(
    args: TrainArguments, model, discriminator, max_train_steps: int, num_processes: int, device_type: str = "cpu"
):
    """AdamW for each model and a warm-up + decay schedule (`transformers.get_scheduler`) in optimizer steps.

    On CPU and CUDA the AdamW update is torch's fused kernel: one pass over each parameter instead of a chain of
    per-tensor ops, the same AdamW up to floating-point rounding (`benchmarks/train_step_speed.py` times the step
    with both: the `ours+fused AdamW` and `ours` rows).
    """
    from transformers import get_scheduler

    scale = args.train_batch_size * args.gradient_accumulation_steps * num_processes if args.scale_lr else 1
    g_lr = args.learning_rate * scale
    d_lr = (args.discriminator_learning_rate or args.learning_rate) * scale
    kwargs = dict(betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    if device_type in ("cpu", "cuda"):
        kwargs["fused"] = True
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("Every parameter is frozen: drop --freeze-encoder or --freeze-codebook.")
    optimizers = [torch.optim.AdamW(trainable, lr=g_lr, **kwargs)]
    if discriminator is not None:
        optimizers.append(torch.optim.AdamW(discriminator.parameters(), lr=d_lr, **kwargs))
    schedulers = [
        get_scheduler(args.lr_scheduler, opt, num_warmup_steps=args.lr_warmup_steps, num_training_steps=max_train_steps)
        for opt in optimizers
    ]
    return optimizers, schedulers


def build_ema(args: TrainArguments, model):
    """An `AveragedModel` EMA of the generator (torch's maintained implementation; no extra dependency), with the
    usual warm-up `decay_n = min(decay, (1 + n) / (10 + n))` so short runs are not dominated by the init."""
    if not args.use_ema:
        return None
    from torch.optim.swa_utils import AveragedModel

    decay = args.ema_decay

    @torch.no_grad()
    def ema_update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c.to(a.dtype) for a, c in floats], weight)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # integer buffers (counters) are copied, not averaged
                a.copy_(c)

    ema = AveragedModel(model, multi_avg_fn=ema_update, use_buffers=True)
    ema.module.requires_grad_(False)
    return ema


# ----------------------------------------------------------------------------------------------------------
# The step


@dataclass
class StepOutput:
    logs: dict[str, torch.Tensor]  # detached scalars
    finite: bool
    images: int  # summed over all processes
    skipped_records: int  # summed over all processes


def train_step(accelerator, model, discriminator, objective, batch, step: int) -> StepOutput:
    """Forward + backward of one batch. Nothing is backpropagated unless every rank's losses are finite and every
    rank has images, so a bad batch leaves the gradients untouched. That agreement and the image and skipped-record
    counts travel in one all-reduce: one host sync per micro-step."""
    pixel_values = batch["pixel_values"]
    has_images = pixel_values.shape[0] > 0
    logs: dict[str, torch.Tensor] = {}
    losses: list[torch.Tensor] = []
    # The quantizer updates some state inside forward (health counters, and with the options on, EMA codes,
    # dead-code restarts, k-means init): kept aside so a non-finite batch cannot write NaNs into the codebook.
    quantizer_state = list(accelerator.unwrap_model(model).quantize.state_dict().values())
    saved_quantizer = [t.clone() for t in quantizer_state]
    if has_images:
        with accelerator.autocast():
            output = model(pixel_values)
        logs.update(codebook_usage=output.codebook_usage, perplexity=output.perplexity)
        if objective is None:  # VQ-VAE: reconstruction + codebook + commitment
            g_loss = output.loss
            logs.update(loss=output.loss, reconstruction_loss=output.reconstruction_loss, quantizer_loss=output.quantizer_loss)
        else:
            unwrapped = accelerator.unwrap_model(model)
            with accelerator.autocast():
                g = objective.generator_loss(
                    pixel_values,
                    output.reconstruction,
                    discriminator=accelerator.unwrap_model(discriminator),
                    step=step,
                    last_layer=unwrapped.get_last_layer(),
                    quantizer_loss=output.quantizer_loss,
                )
            g_loss = g.loss
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
        losses.append(g_loss)
        d_loss = None
        if objective is not None and objective.config.trains_discriminator(step):
            with accelerator.autocast():
                d = objective.discriminator_loss(pixel_values, output.reconstruction, discriminator=discriminator)
            d_loss = d.loss
            losses.append(d_loss)
            logs.update(d_loss=d.loss, d_logits_real=d.logits_real, d_logits_fake=d.logits_fake)
    ok = torch.stack([torch.isfinite(x) for x in losses]).all() if has_images else torch.tensor(False)
    local = torch.stack(
        [
            ok.to(accelerator.device, torch.float32),
            torch.tensor(float(pixel_values.shape[0]), device=accelerator.device),
            torch.as_tensor(batch.get("num_skipped", 0), dtype=torch.float32).to(accelerator.device),
        ]
    )
    agreed, images, skipped = accelerator.reduce(local, reduction="sum").tolist()
    finite = agreed == accelerator.num_processes
    if finite:
        accelerator.backward(g_loss)
        if d_loss is not None:
            accelerator.backward(d_loss)
    else:
        with torch.no_grad():
            for tensor, saved in zip(quantizer_state, saved_quantizer):
                tensor.copy_(saved)
    return StepOutput({k: v.detach().float() for k, v in logs.items()}, finite, int(images), int(skipped))


def optimizer_step(accelerator, args, models, optimizers, schedulers, window_ok: bool) -> tuple[bool, dict]:
    """Clip, check the gradient norms, step. Returns (stepped, grad norms). A non-finite window is discarded."""
    norms = {}
    if window_ok and args.max_grad_norm > 0:
        for name, m in zip(("generator", "discriminator"), models):
            norms[name] = accelerator.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], args.max_grad_norm)
        window_ok = all(bool(torch.isfinite(torch.as_tensor(n))) for n in norms.values())
    if window_ok:
        for opt in optimizers:
            opt.step()
        if not accelerator.optimizer_step_was_skipped:  # fp16 loss scaling skips overflowing steps
            for sched in schedulers:
                sched.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return window_ok, {k: float(v) for k, v in norms.items()}


# ----------------------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """Everything one training run holds, prepared for the accelerator."""

    args: TrainArguments
    accelerator: Any
    model: Any  # prepared (DDP-wrapped when distributed)
    discriminator: Any | None
    objective: Any | None
    optimizers: list
    schedulers: list
    dataloader: Any
    ema: Any | None
    stream: Any
    eval_images: torch.Tensor | None  # held-out images: evaluation and the sample grid
    grid_images: torch.Tensor | None  # the grid's images: eval_images, else training images (no held-out split)
    max_train_steps: int
    state: TrainingState = field(default_factory=TrainingState)

    @property
    def models(self) -> list:
        return [self.model] + ([self.discriminator] if self.discriminator is not None else [])

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    def sample_model(self):
        """What gets saved and shown: the EMA weights when enabled."""
        return self.ema.module if self.ema is not None else self.accelerator.unwrap_model(self.model)


def set_up(args: TrainArguments) -> Run:
    """Count first, build second: data and step budget, then models, optimizers and schedules, all prepared."""
    from accelerate.utils import set_seed

    accelerator = build_accelerator(args)
    quiet_libraries()
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
    )
    set_seed(args.seed)
    prepare_output_dir(args, accelerator)

    model, discriminator = build_models(args)
    pixel_range = tuple(model.config.pixel_range)
    data = dict(pixel_range=pixel_range, dataset_config_name=args.dataset_config_name, image_column=args.image_column)
    stream = build_train_stream(
        args.dataset_name,
        resolution=args.resolution,
        seed=args.seed,
        split=args.train_split,
        random_flip=args.random_flip,
        shuffle_buffer_size=args.shuffle_buffer_size,
        **data,
    )
    max_train_steps = resolve_max_train_steps(args, stream.num_examples, accelerator.num_processes)
    objective = build_objective(args, model, max_train_steps)
    optimizers, schedulers = build_optimizers(
        args, model, discriminator, max_train_steps, accelerator.num_processes, accelerator.device.type
    )
    dataloader = build_train_dataloader(stream, args.train_batch_size, args.dataloader_num_workers, accelerator.num_processes)
    eval_images, _ = load_eval_images(
        args.dataset_name, num_images=args.num_eval_images, resolution=args.resolution, split=args.eval_split, **data
    )
    grid_images = eval_images
    if eval_images is None:  # no held-out split: the grid still shows (training) images, evaluation is off
        grid_images, _ = load_eval_images(
            args.dataset_name, num_images=args.num_eval_images, resolution=args.resolution, split=args.train_split, **data
        )

    models = [model] + ([discriminator] if discriminator is not None else [])
    n = len(models)
    prepared = accelerator.prepare(*models, *optimizers, *schedulers, dataloader)
    models, optimizers, schedulers = list(prepared[:n]), list(prepared[n : 2 * n]), list(prepared[2 * n : 3 * n])
    if objective is not None:
        objective.to(accelerator.device)
    run = Run(
        args=args,
        accelerator=accelerator,
        model=models[0],
        discriminator=models[1] if n > 1 else None,
        objective=objective,
        optimizers=optimizers,
        schedulers=schedulers,
        dataloader=prepared[-1],
        ema=build_ema(args, accelerator.unwrap_model(models[0])),
        stream=stream,
        eval_images=eval_images.to(accelerator.device) if eval_images is not None else None,
        grid_images=grid_images.to(accelerator.device) if grid_images is not None else None,
        max_train_steps=max_train_steps,
    )
    accelerator.register_for_checkpointing(run.state)
    register_checkpoint_hooks(
        accelerator,
        model=accelerator.unwrap_model(run.model),
        discriminator=accelerator.unwrap_model(run.discriminator) if run.discriminator is not None else None,
        ema=run.ema,
    )
    return run


def resume(run: Run) -> tuple[int, int]:
    """Loads weights, optimizers, schedules, RNG and counters; returns this rank's (epoch, batches to replay)."""
    accelerator, state = run.accelerator, run.state
    checkpoint = resolve_resume_checkpoint(run.args.resume_from_checkpoint, run.output_dir)
    if checkpoint is None:
        return 0, 0
    logger.info("Resuming from %s", checkpoint)
    accelerator.load_state(str(checkpoint))
    if run.ema is not None:
        run.ema.n_averaged.fill_(state.ema_updates)
    if len(state.epochs) != accelerator.num_processes:
        raise ValueError(
            f"{checkpoint} was written by {len(state.epochs)} processes; resume it with the same number (this run "
            f"has {accelerator.num_processes}) so that every rank continues from its own data position."
        )
    rank = accelerator.process_index
    return state.epochs[rank], state.batches_in_epoch[rank]


def log_step(run: Run, step_out: StepOutput, grad_norms: dict, images_per_second: float, progress) -> None:
    step, logs = run.state.global_step, {f"train/{k}": float(v) for k, v in step_out.logs.items()}
    logs.update({f"grad_norm/{k}": v for k, v in grad_norms.items()})
    logs.update({f"lr/{name}": s.get_last_lr()[0] for name, s in zip(("generator", "discriminator"), run.schedulers)})
    logs["throughput/images_per_second"] = images_per_second
    logs["data/skipped_records"] = run.state.skipped_records
    logs["train/nonfinite_steps"] = run.state.nonfinite_steps
    if run.objective is not None:
        logs["train/gan_factor"] = run.objective.config.gan_factor(step - 1)
    run.accelerator.log(logs, step=step)
    shown = ("loss", "reconstruction_loss", "perceptual_loss", "gan_loss", "codebook_usage")
    progress.set_postfix({k.split("/")[1]: f"{v:.3g}" for k, v in logs.items() if k.split("/")[1] in shown})


def watch(run: Run) -> None:
    """Every N steps, on the main process: the sample grid and the held-out evaluation."""
    args, step = run.args, run.state.global_step
    if not run.accelerator.is_main_process:
        return
    if args.image_logging_steps and step % args.image_logging_steps == 0 and run.grid_images is not None:
        path = run.output_dir / "samples" / f"step-{step:07d}.png"
        log_grid(run.accelerator, save_grid(run.sample_model(), run.grid_images, path), step)
    if args.eval_steps and step % args.eval_steps == 0 and run.eval_images is not None:
        metrics = evaluate(run.sample_model(), run.eval_images)
        run.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
        logger.info("step %d eval: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


def train(args: TrainArguments) -> int:
    """Runs `hf-vq train` with parsed arguments. Returns 0, or 1 if the run was stopped by non-finite losses."""
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    run = set_up(args)
    accelerator, state, model = run.accelerator, run.state, run.model
    epoch, replay = resume(run)
    if accelerator.is_main_process:
        config = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(args).items()}
        accelerator.init_trackers(args.tracker_project_name, config=config)
        unwrapped = accelerator.unwrap_model(model)
        logger.info(
            "Training %s (%.2fM parameters) on %s for %d steps, %d images per step over %d process(es)",
            type(unwrapped).__name__,
            sum(p.numel() for p in unwrapped.parameters()) / 1e6,
            run.stream.description,
            run.max_train_steps,
            args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes,
            accelerator.num_processes,
        )

    progress = tqdm(total=run.max_train_steps, initial=state.global_step, disable=not accelerator.is_main_process, desc="train", dynamic_ncols=True)
    checkpoints = list_checkpoints(run.output_dir)
    last_checkpoint = checkpoints[-1] if checkpoints else None
    window_ok, window_start, window_images = True, time.perf_counter(), 0
    stop_message = None
    while state.global_step < run.max_train_steps and stop_message is None:
        run.dataloader.set_epoch(epoch)
        # After a resume, replay this rank's stream to where the checkpoint left it (deterministic: see data.py).
        batches = accelerator.skip_first_batches(run.dataloader, replay) if replay else run.dataloader
        batches_in_epoch, replay = replay, 0
        for batch in batches:
            batches_in_epoch += 1
            with accelerator.accumulate(*run.models):
                step_out = train_step(accelerator, model, run.discriminator, run.objective, batch, state.global_step)
                window_ok &= step_out.finite
                state.images_seen += step_out.images
                state.skipped_records += step_out.skipped_records
                window_images += step_out.images
                state.micro_steps += 1
                if not accelerator.sync_gradients:
                    continue
                stepped, grad_norms = optimizer_step(accelerator, args, run.models, run.optimizers, run.schedulers, window_ok)
            window_ok = True

            if not stepped:  # NaN/inf guard: nothing was updated; stop after too many in a row
                state.nonfinite_steps += 1
                state.consecutive_nonfinite += 1
                logger.warning("Step %d skipped: non-finite loss or gradient (%d in a row)", state.global_step, state.consecutive_nonfinite)
                accelerator.log({"train/nonfinite_steps": state.nonfinite_steps}, step=state.global_step)
                if state.consecutive_nonfinite >= args.max_consecutive_nonfinite:
                    stop_message = (
                        f"{state.consecutive_nonfinite} steps in a row had a non-finite loss or gradient; stopping. "
                        f"Last good checkpoint: {last_checkpoint or 'none yet'}. Resume from it with "
                        f"--resume-from-checkpoint {last_checkpoint or 'latest'} and a lower --learning-rate "
                        "(or --mixed-precision bf16 / no instead of fp16)."
                    )
                    break
                continue
            state.consecutive_nonfinite = 0
            if run.ema is not None:
                run.ema.update_parameters(accelerator.unwrap_model(model))
                state.ema_updates += 1
            state.global_step += 1
            progress.update(1)
            step = state.global_step

            if step % args.logging_steps == 0 or step == run.max_train_steps:
                rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                log_step(run, step_out, grad_norms, rate, progress)
                window_start, window_images = time.perf_counter(), 0
            watch(run)
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                state.epochs, state.batches_in_epoch = gather_positions(accelerator, epoch, batches_in_epoch)
                last_checkpoint = save_checkpoint(accelerator, run.output_dir, step, args.checkpoints_total_limit)
                logger.info("Saved checkpoint %s", last_checkpoint)
            if step >= run.max_train_steps:
                break
        else:
            if batches_in_epoch == 0:
                raise ValueError(f"The training split of {run.stream.description} yielded no full batch of images.")
            epoch += 1  # the stream ran out: next pass, reshuffled
    progress.close()

    if stop_message is not None:
        accelerator.end_training()
        if accelerator.is_main_process:
            print(f"hf-vq train: {stop_message}", file=sys.stderr)
        return 1
    finish(run, time.perf_counter() - start_time)
    return 0


def finish(run: Run, seconds: float) -> None:
    """The final model (EMA weights when enabled), its discriminator, a sample grid, a model card; then push."""
    accelerator, args, output_dir = run.accelerator, run.args, run.output_dir
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final_model = run.sample_model()
        results = None
        if run.grid_images is not None:
            save_grid(final_model, run.grid_images, output_dir / SAMPLES_NAME)
        if run.eval_images is not None:
            metrics = evaluate(final_model, run.eval_images)
            accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=run.state.global_step)
            results = eval_results(args, metrics, int(run.eval_images.shape[0]))
        has_grid = run.grid_images is not None
        final_model.card_info = card_info(
            args, accelerator, final_model, run.objective, run.stream, run.state, results, has_grid, run.eval_images is not None
        )
        final_model.save_pretrained(output_dir)
        if run.discriminator is not None:
            accelerator.unwrap_model(run.discriminator).save_pretrained(output_dir / "discriminator")
        (output_dir / "training_args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
        if args.push_to_hub:
            from ..hub import push_folder

            repo_id = args.hub_model_id or output_dir.resolve().name
            commit = push_folder(output_dir, repo_id, private=args.hub_private_repo)
            logger.info("Pushed to %s", getattr(commit, "commit_url", repo_id))
        print_summary(args, output_dir, run.state, seconds, has_grid, type(final_model).__name__)
    accelerator.wait_for_everyone()
    accelerator.end_training()


def quiet_libraries() -> None:
    """One line per checkpoint, not one per file: accelerate's per-file INFO logs and transformers' shard bars off."""
    import transformers

    logging.getLogger("accelerate").setLevel(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()


def gather_positions(accelerator, epoch: int, batches_in_epoch: int) -> tuple[list[int], list[int]]:
    """Every rank's (epoch, batches consumed in it): ranks can be at different points of their own shards."""
    local = torch.tensor([[epoch, batches_in_epoch]], device=accelerator.device)
    everyone = accelerator.gather(local).cpu().tolist()
    return [e for e, _ in everyone], [b for _, b in everyone]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"hf-vq train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
