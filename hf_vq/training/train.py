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
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .arguments import TrainArguments, parse_args, parse_json_or_file, resolve_max_train_steps
from .checkpointing import list_checkpoints, register_checkpoint_hooks, resolve_resume_checkpoint, save_checkpoint
from .data import build_train_dataloader, build_train_stream, load_eval_images

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
    # run: 19% of K after 45 steps, against 1% with 16-d unnormalised codes.
    codebook_dim=8,
    codebook_l2_norm=True,
    norm_num_groups=8,
    sample_size=64,
)
DEFAULT_VQVAE_CONFIG = dict(
    hidden_channels=64, residual_hidden_channels=32, latent_channels=16, num_vq_embeddings=512, sample_size=64
)
DEFAULT_DISCRIMINATOR_CONFIG = dict(base_channels=32, num_layers=2, norm_num_groups=8)
SAMPLES_NAME = "samples.png"


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


class NonFiniteLossError(RuntimeError):
    pass


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
        if args.model_type == "vqgan":
            fields = overrides or {**DEFAULT_VQGAN_CONFIG, "sample_size": args.resolution}
            model = VQGANModel(VQGANConfig(**fields))
        else:
            fields = overrides or {**DEFAULT_VQVAE_CONFIG, "sample_size": args.resolution}
            model = VQVAEModel(VQVAEConfig(**fields))
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
        model.gradient_checkpointing_enable()
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


def build_optimizers(args: TrainArguments, model, discriminator, max_train_steps: int, num_processes: int):
    """AdamW for each model and a warm-up + decay schedule (`transformers.get_scheduler`) in optimizer steps."""
    from transformers import get_scheduler

    scale = args.train_batch_size * args.gradient_accumulation_steps * num_processes if args.scale_lr else 1
    g_lr = args.learning_rate * scale
    d_lr = (args.discriminator_learning_rate or args.learning_rate) * scale
    kwargs = dict(betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
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
    batch_size: int


def train_step(accelerator, model, discriminator, objective, batch, step: int) -> StepOutput:
    """Forward + backward of one batch. Nothing is backpropagated unless every rank's losses are finite and every
    rank has images (agreed with one all-reduce), so a bad batch leaves the gradients untouched."""
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
                adaptive_weight=g.gan_weight,
                quantizer_loss=g.quantizer_loss,
            )
        losses.append(g_loss)
        d_loss = None
        if objective is not None and objective.config.trains_discriminator(step):
            with accelerator.autocast():
                d = objective.discriminator_loss(pixel_values, output.reconstruction, discriminator=discriminator)
            d_loss = d.loss
            losses.append(d_loss)
            logs.update(d_loss=d.loss, d_logits_real=d.logits_real, d_logits_fake=d.logits_fake)
    ok = torch.tensor(float(has_images and all(bool(torch.isfinite(x)) for x in losses)), device=accelerator.device)
    finite = bool(accelerator.reduce(ok, reduction="sum").item() == accelerator.num_processes)
    if finite:
        accelerator.backward(g_loss)
        if d_loss is not None:
            accelerator.backward(d_loss)
    else:
        with torch.no_grad():
            for tensor, saved in zip(quantizer_state, saved_quantizer):
                tensor.copy_(saved)
    return StepOutput({k: v.detach().float() for k, v in logs.items()}, finite, int(pixel_values.shape[0]))


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
# Watching it run: sample grid and evaluation


def to_uint8_images(pixel_values: torch.Tensor, pixel_range) -> np.ndarray:
    """(B, 3, H, W) in pixel_range -> (B, H, W, 3) uint8."""
    low, high = pixel_range
    unit = ((pixel_values.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
    return (unit * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(inputs: np.ndarray, reconstructions: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """Rows of inputs, each followed by the row of their reconstructions. (H', W', 3) uint8, white padding."""
    n, h, w, _ = inputs.shape
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    grid = np.full((rows * 2 * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        x = pad + c * (w + pad)
        for k, images in enumerate((inputs, reconstructions)):
            y = pad + (2 * r + k) * (h + pad)
            grid[y : y + h, x : x + w] = images[i]
    return grid


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch_size: int = 16):
    """Reconstructions and token ids of `images` in eval mode (fp32), restoring the train/eval mode after."""
    was_training = model.training
    model.eval()
    recons, indices = [], []
    for chunk in images.split(batch_size):
        out = model(chunk)
        recons.append(out.reconstruction.float())
        indices.append(out.indices)
    model.train(was_training)
    return torch.cat(recons), torch.cat(indices)


def evaluate(model, images: torch.Tensor) -> dict[str, float]:
    """PSNR / SSIM (hf_vq.evaluation's conventions: on 8-bit images) and code usage on the held-out images."""
    from ..evaluation.metrics import codebook_statistics, psnr, ssim, to_uint8

    recon, indices = reconstruct(model, images)
    pixel_range = model.config.pixel_range
    real8, fake8 = to_uint8(images.cpu(), pixel_range), to_uint8(recon.cpu(), pixel_range)
    values = psnr(fake8, real8)
    counts = torch.bincount(indices.flatten().cpu(), minlength=model.config.num_vq_embeddings)
    stats = codebook_statistics(counts)
    return {
        "psnr": float(values[torch.isfinite(values)].mean()) if torch.isfinite(values).any() else float("inf"),
        "ssim": float(ssim(fake8, real8).mean()),
        "codebook_usage": stats["codebook_usage"],
        "perplexity": stats["perplexity"],
    }


def save_grid(model, images: torch.Tensor, path: Path) -> np.ndarray:
    recon, _ = reconstruct(model, images)
    pixel_range = model.config.pixel_range
    grid = make_grid(to_uint8_images(images, pixel_range), to_uint8_images(recon, pixel_range))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return grid


def log_grid(accelerator, grid: np.ndarray, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({"samples": grid[None]}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({"samples": [grid]}, step=step)


# ----------------------------------------------------------------------------------------------------------
# The run


def train(args: TrainArguments) -> int:
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    accelerator = build_accelerator(args)
    quiet_libraries()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    prepare_output_dir(args, accelerator)
    start_time = time.perf_counter()

    model, discriminator = build_models(args)
    pixel_range = tuple(model.config.pixel_range)
    stream = build_train_stream(
        args.dataset_name,
        resolution=args.resolution,
        pixel_range=pixel_range,
        seed=args.seed,
        dataset_config_name=args.dataset_config_name,
        split=args.train_split,
        image_column=args.image_column,
        random_flip=args.random_flip,
        shuffle_buffer_size=args.shuffle_buffer_size,
    )
    max_train_steps = resolve_max_train_steps(args, stream.num_examples, accelerator.num_processes)
    objective = build_objective(args, model, max_train_steps)
    optimizers, schedulers = build_optimizers(args, model, discriminator, max_train_steps, accelerator.num_processes)
    dataloader = build_train_dataloader(stream, args.train_batch_size, args.dataloader_num_workers, accelerator.num_processes)
    eval_images, eval_skipped = load_eval_images(
        args.dataset_name,
        num_images=args.num_eval_images,
        resolution=args.resolution,
        pixel_range=pixel_range,
        dataset_config_name=args.dataset_config_name,
        split=args.eval_split,
        image_column=args.image_column,
    )

    models = [model] + ([discriminator] if discriminator is not None else [])
    prepared = accelerator.prepare(*models, *optimizers, *schedulers, dataloader)
    n = len(models)
    models, optimizers, schedulers, dataloader = list(prepared[:n]), list(prepared[n : 2 * n]), list(prepared[2 * n : 3 * n]), prepared[-1]
    model = models[0]
    discriminator = models[1] if n > 1 else None
    if objective is not None:
        objective.to(accelerator.device)
    ema = build_ema(args, accelerator.unwrap_model(model))
    state = TrainingState()
    accelerator.register_for_checkpointing(state)
    register_checkpoint_hooks(
        accelerator,
        model=accelerator.unwrap_model(model),
        discriminator=accelerator.unwrap_model(discriminator) if discriminator is not None else None,
        ema=ema,
    )

    # Resume: weights, optimizers, schedules, RNG, counters; then the data stream is replayed to its position.
    resume_from = resolve_resume_checkpoint(args.resume_from_checkpoint, output_dir)
    rank = accelerator.process_index
    if resume_from is not None:
        logger.info("Resuming from %s", resume_from)
        accelerator.load_state(str(resume_from))
        if ema is not None:
            ema.n_averaged.fill_(state.ema_updates)
        if len(state.epochs) != accelerator.num_processes:
            raise ValueError(
                f"{resume_from} was written by {len(state.epochs)} processes; resume it with the same number "
                f"(this run has {accelerator.num_processes}) so every rank continues its own data position."
            )
    epoch, skip_batches = state.epochs[rank] if resume_from else 0, state.batches_in_epoch[rank] if resume_from else 0

    if accelerator.is_main_process:
        config = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(args).items()}
        accelerator.init_trackers(args.tracker_project_name, config=config)
        logger.info(
            "Training %s (%.2fM parameters) on %s for %d steps, %d images per step over %d process(es)",
            type(accelerator.unwrap_model(model)).__name__,
            sum(p.numel() for p in accelerator.unwrap_model(model).parameters()) / 1e6,
            stream.description,
            max_train_steps,
            args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes,
            accelerator.num_processes,
        )

    progress = tqdm(total=max_train_steps, initial=state.global_step, disable=not accelerator.is_main_process, desc="train", dynamic_ncols=True)
    window_ok, window_start, window_images = True, time.perf_counter(), 0
    last_checkpoint = list_checkpoints(output_dir)[-1] if list_checkpoints(output_dir) else None
    step_out = None
    stopped_early = None
    while state.global_step < max_train_steps and stopped_early is None:
        dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(dataloader, skip_batches) if skip_batches else dataloader
        batches_in_epoch = skip_batches
        skip_batches = 0
        for batch in batches:
            batches_in_epoch += 1
            with accelerator.accumulate(*models):
                step_out = train_step(accelerator, model, discriminator, objective, batch, state.global_step)
                window_ok &= step_out.finite
                sizes = accelerator.reduce(torch.tensor([step_out.batch_size, int(batch["num_skipped"])], device=accelerator.device), reduction="sum")
                state.images_seen += int(sizes[0])
                state.skipped_records += int(sizes[1])
                window_images += int(sizes[0])
                state.micro_steps += 1
                if not accelerator.sync_gradients:
                    continue
                stepped, grad_norms = optimizer_step(accelerator, args, models, optimizers, schedulers, window_ok)
            window_ok = True
            if not stepped:
                state.nonfinite_steps += 1
                state.consecutive_nonfinite += 1
                logger.warning("Step %d skipped: non-finite loss or gradient (%d in a row)", state.global_step, state.consecutive_nonfinite)
                accelerator.log({"train/nonfinite_steps": state.nonfinite_steps}, step=state.global_step)
                if state.consecutive_nonfinite >= args.max_consecutive_nonfinite:
                    stopped_early = (
                        f"{state.consecutive_nonfinite} steps in a row had a non-finite loss or gradient; stopping. "
                        f"Last good checkpoint: {last_checkpoint or 'none yet'}. Resume from it with "
                        f"--resume-from-checkpoint {last_checkpoint or 'latest'} and a lower --learning-rate "
                        "(or --mixed-precision no / bf16 instead of fp16)."
                    )
                    break
                continue
            state.consecutive_nonfinite = 0
            if ema is not None:
                ema.update_parameters(accelerator.unwrap_model(model))
                state.ema_updates += 1
            state.global_step += 1
            progress.update(1)
            step = state.global_step

            if step % args.logging_steps == 0 or step == max_train_steps:
                elapsed = time.perf_counter() - window_start
                logs = {f"train/{k}": float(v) for k, v in step_out.logs.items()}
                logs.update({f"grad_norm/{k}": v for k, v in grad_norms.items()})
                logs.update({f"lr/{name}": s.get_last_lr()[0] for name, s in zip(("generator", "discriminator"), schedulers)})
                logs.update(
                    {
                        "throughput/images_per_second": window_images / max(elapsed, 1e-9),
                        "data/skipped_records": state.skipped_records,
                        "train/nonfinite_steps": state.nonfinite_steps,
                    }
                )
                if objective is not None:
                    logs["train/gan_factor"] = objective.config.gan_factor(step - 1)
                accelerator.log(logs, step=step)
                progress.set_postfix({k.split("/")[1]: f"{v:.3g}" for k, v in logs.items() if k.split("/")[1] in ("loss", "reconstruction_loss", "perceptual_loss", "gan_loss", "codebook_usage")})
                window_start, window_images = time.perf_counter(), 0

            sample_model = ema.module if ema is not None else accelerator.unwrap_model(model)
            if accelerator.is_main_process and eval_images is not None:
                if args.image_logging_steps and step % args.image_logging_steps == 0:
                    grid = save_grid(sample_model, eval_images.to(accelerator.device), output_dir / "samples" / f"step-{step:07d}.png")
                    log_grid(accelerator, grid, step)
                if args.eval_steps and step % args.eval_steps == 0:
                    metrics = evaluate(sample_model, eval_images.to(accelerator.device))
                    accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
                    logger.info("step %d eval: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                state.epochs, state.batches_in_epoch = gather_positions(accelerator, epoch, batches_in_epoch)
                last_checkpoint = save_checkpoint(accelerator, output_dir, step, args.checkpoints_total_limit)
                logger.info("Saved checkpoint %s", last_checkpoint)
            if step >= max_train_steps:
                break
        else:
            epoch += 1  # the stream ran out: next pass, reshuffled
            if batches_in_epoch == 0:
                raise ValueError(f"The training split of {stream.description} yielded no full batch of images.")
    progress.close()

    if stopped_early is not None:
        logger.error(stopped_early)
        accelerator.end_training()
        if accelerator.is_main_process:
            print(f"hf-vq train: {stopped_early}", file=sys.stderr)
        return 1

    # Finish: the final model (EMA weights when enabled), its discriminator, a sample grid and a model card.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final_model = ema.module if ema is not None else accelerator.unwrap_model(model)
        results = None
        if eval_images is not None:
            save_grid(final_model, eval_images.to(accelerator.device), output_dir / SAMPLES_NAME)
            metrics = evaluate(final_model, eval_images.to(accelerator.device))
            accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.global_step)
            results = {
                "metrics": metrics,
                "dataset": args.dataset_name or "built-in photos",
                "split": "eval (chelsea, flower, rocket)" if args.dataset_name is None else (args.eval_split or "validation/test"),
                "num_images": int(eval_images.shape[0]),
                "image_size": args.resolution,
                "protocol": {"description": "held-out images evaluated by hf-vq train at the end of training"},
                "command": "hf-vq train " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:]),
            }
        final_model.card_info = card_info(args, accelerator, final_model, objective, stream, state, max_train_steps, results, eval_images is not None)
        final_model.save_pretrained(output_dir)
        if discriminator is not None:
            accelerator.unwrap_model(discriminator).save_pretrained(output_dir / "discriminator")
        (output_dir / "training_args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
        if args.push_to_hub:
            from ..hub import push_folder

            repo_id = args.hub_model_id or output_dir.resolve().name
            commit = push_folder(output_dir, repo_id, private=args.hub_private_repo)
            logger.info("Pushed to %s", getattr(commit, "commit_url", repo_id))
        print_summary(args, output_dir, state, time.perf_counter() - start_time, eval_images is not None, type(final_model).__name__)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


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


def card_info(args, accelerator, model, objective, stream, state, max_train_steps, results, has_grid) -> dict:
    if objective is None:
        losses = f"{model.config.reconstruction_loss_type.upper()} + codebook + commitment (β={model.config.commitment_cost})"
    else:
        c = objective.config
        losses = f"{c.reconstruction_loss_type.upper()}"
        if c.perceptual_weight > 0:
            losses += f" + {c.perceptual_weight:g}·LPIPS({args.perceptual_net})"
        losses += f" + codebook + commitment + {c.gan_loss_type} GAN (adaptive weight × {c.disc_weight:g}, on from step {c.disc_start}, ramp {c.disc_ramp_steps})"
    device = "CPU" if accelerator.device.type == "cpu" else torch.cuda.get_device_name(accelerator.device)
    training = {
        "dataset": stream.description,
        "steps": state.global_step,
        "batch_size": args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes,
        "learning_rate": args.learning_rate,
        "lr_schedule": f"{args.lr_scheduler}, {args.lr_warmup_steps} warm-up steps",
        "image_size": args.resolution,
        "losses": losses,
        "precision": args.mixed_precision if args.mixed_precision != "no" else "fp32",
        "ema": f"decay {args.ema_decay} (saved weights)" if args.use_ema else "off",
        "hardware": f"{accelerator.num_processes}x {device}",
    }
    if args.init_from:
        frozen = [name for name, on in (("encoder", args.freeze_encoder), ("codebook", args.freeze_codebook)) if on]
        training["fine_tuned_from"] = args.init_from + (f" ({' and '.join(frozen)} frozen)" if frozen else "")
    info = {"training": training, "datasets": [args.dataset_name] if args.dataset_name else ["built-in photos (scikit-image, scikit-learn, matplotlib)"]}
    if args.init_from and not Path(args.init_from).exists():
        info["base_model"] = args.init_from
    if has_grid:
        info["grid"] = SAMPLES_NAME
        info["grid_caption"] = f"Held-out images (odd rows) and their reconstructions (even rows) after {state.global_step} steps."
    if results is not None:
        info["results"] = results
    return info


def print_summary(args, output_dir: Path, state: TrainingState, seconds: float, has_grid: bool, model_class: str) -> None:
    lines = [
        f"Done: {state.global_step} steps in {seconds / 60:.1f} min ({state.images_seen} images"
        + (f", {state.skipped_records} unreadable records skipped" if state.skipped_records else "")
        + (f", {state.nonfinite_steps} non-finite steps skipped" if state.nonfinite_steps else "")
        + ").",
        f"Model (with model card README.md): {output_dir}",
    ]
    if has_grid:
        lines.append(f"Inputs vs reconstructions:      {output_dir / SAMPLES_NAME} (and per-step grids in {output_dir / 'samples'})")
    if args.report_to in ("tensorboard", "all"):
        lines.append(f"Loss curves:                    tensorboard --logdir {output_dir / 'logs'}")
    lines.append(f"Load it in Python:              {model_class}.from_pretrained({str(output_dir)!r})")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"hf-vq train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
