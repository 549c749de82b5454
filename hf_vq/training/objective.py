"""The tokenizer's training objective on a schedule sized to the run: `hf-vq train`'s VQ-GAN loss (pixel + LPIPS +
adaptive-weight GAN, LeCam, R1) and the model card's description of it. Used by `tokenizer.TokenizerTask`."""

from __future__ import annotations

import logging

from torch import nn

from ..losses import VQGANLoss, VQGANLossConfig, load_lpips
from .tokenizer_arguments import TrainArguments

logger = logging.getLogger(__name__)

# Runs shorter than this leave the GAN off unless `--discriminator-start` is given. Adversarial training pays off once
# the autoencoder has converged (taming switches it on after 10k+ steps); over 400-3000 CPU steps on the built-in
# photos it never lowered held-out LPIPS, and at the main job's 400 steps it raised it by 5% (p = 0.001; five paired
# seeds, benchmarks/results/gan_ablation.md), with visible artefacts in the samples.
GAN_MIN_STEPS = 10_000


def gan_is_off(args: TrainArguments, max_train_steps: int) -> bool:
    """Whether the run never switches the GAN on: a short run whose `--discriminator-start` is unset."""
    return args.discriminator_start is None and max_train_steps < GAN_MIN_STEPS


def default_adam_beta1(discriminator_trains: bool) -> float:
    """`--adam-beta1` unset: taming's 0.5 when the discriminator trains (a GAN-stability setting), else Adam's 0.9."""
    return 0.5 if discriminator_trains else 0.9


def build_objective(args: TrainArguments, model: nn.Module, max_train_steps: int) -> VQGANLoss:
    """The VQ-GAN objective: pixel + LPIPS + adaptive-weight GAN (+ LeCam / R1), on a warm-up/ramp schedule.

    Unset schedule flags scale with the run: the GAN switches on halfway, the discriminator pre-trains for a
    quarter of the run before that and the generator's GAN weight ramps in over a quarter after it (capped at
    the objective's own defaults, 10000 / 2000 / 2000 steps, for long runs). A run shorter than `GAN_MIN_STEPS`
    leaves the GAN off (pixel + LPIPS + codebook only) unless `--discriminator-start` is given.
    """
    defaults = VQGANLossConfig()

    def chosen(flag, default):
        return default if flag is None else flag

    if gan_is_off(args, max_train_steps):
        disc_start, pretrain = max_train_steps, 0  # steps count 0 .. max_train_steps - 1: never reached
        logger.info(
            "The GAN stays off: a %d-step run is shorter than %d steps, and on short runs the GAN made held-out "
            "reconstructions worse (README, 'The VQ-GAN objective'). Switch it on with --discriminator-start N "
            "(e.g. %d, half the run).",
            max_train_steps,
            GAN_MIN_STEPS,
            max_train_steps // 2,
        )
    else:
        disc_start = chosen(args.discriminator_start, min(defaults.disc_start, max_train_steps // 2))
        pretrain = min(defaults.disc_pretrain_steps, max_train_steps // 4, disc_start)
    config = VQGANLossConfig(
        reconstruction_loss_type="l1" if model.config.reconstruction_loss_type == "l1" else "l2",
        perceptual_weight=chosen(args.perceptual_weight, defaults.perceptual_weight),
        disc_weight=chosen(args.discriminator_weight, defaults.disc_weight),
        disc_start=disc_start,
        disc_pretrain_steps=pretrain,
        disc_ramp_steps=min(defaults.disc_ramp_steps, max(1, max_train_steps // 4)),
        lecam_weight=chosen(args.lecam_weight, defaults.lecam_weight),
        lecam_ema_decay=chosen(args.lecam_ema_decay, defaults.lecam_ema_decay),
        r1_weight=chosen(args.r1_weight, defaults.r1_weight),
    )
    perceptual = load_lpips(args.perceptual_net) if config.perceptual_weight > 0 else None
    return VQGANLoss(config, perceptual=perceptual)


def describe_losses(args: TrainArguments, model: nn.Module, objective: VQGANLoss | None, gan_off: bool = False) -> str:
    """The model card's `losses` row (`gan_off`: the run never switched the GAN on)."""
    if objective is None:
        config = model.config
        return f"{config.reconstruction_loss_type.upper()} + codebook + commitment (β={config.commitment_cost})"
    c = objective.config
    losses = f"{c.reconstruction_loss_type.upper()}"
    if c.perceptual_weight > 0:
        losses += f" + {c.perceptual_weight:g}·LPIPS({args.perceptual_net})"
    if gan_off:
        return losses + f" + codebook + commitment; GAN off (runs under {GAN_MIN_STEPS} steps; --discriminator-start)"
    losses += (
        f" + codebook + commitment + {c.gan_loss_type} GAN (adaptive weight × {c.disc_weight:g}, on from step "
        f"{c.disc_start}, ramp {c.disc_ramp_steps})"
    )
    if c.lecam_weight > 0:
        losses += f" + {c.lecam_weight:g}·LeCam (decay {c.lecam_ema_decay:g})"
    if c.r1_weight > 0:
        losses += f" + {c.r1_weight:g}·R1"
    return losses


__all__ = ["GAN_MIN_STEPS", "build_objective", "default_adam_beta1", "describe_losses", "gan_is_off"]
