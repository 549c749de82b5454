"""The VQ-GAN objective (Esser et al. 2021, https://arxiv.org/abs/2012.09841) as small, tested pieces.

The pixel reconstruction loss here, the adversarial pieces (GAN losses on discriminator *logits*, the adaptive
generator weight, the warm-up / ramp schedule, LeCam and R1 regularisers) in `gan.py`, the perceptual distance in
`lpips.py`. `VQGANLoss` puts them together for a training loop: one call for the generator (autoencoder) step, one
for the discriminator step, each touching only its own side's gradients.

What the references get wrong, and what we do instead:

- A Sigmoid discriminator under a hinge loss (diffusers' VQGAN example): the hinge wants unbounded scores,
  with σ in (0, 1) its discriminator loss can never go below 0.5. Every loss here takes logits, and
  `VQGANDiscriminator` returns logits.
- Swapped BCE arguments in the non-saturating generator loss (LlamaGen #84: `BCE(input=ones, target=logits)`).
  Here it is written out: `softplus(-logits) = -log σ(logits)`.
- The GAN switched on as a step at `disc_start` (taming), which throws a random discriminator's gradients at a
  trained autoencoder and visibly wrecks reconstructions (taming #44, latent-diffusion #350). Here the
  discriminator can train on reconstructions before `disc_start` (`disc_pretrain_steps`) and the generator's
  GAN weight ramps in linearly over `disc_ramp_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.configuration_utils import config_error
from .gan import (
    GAN_LOSS_TYPES,
    GANLossType,
    LeCamEMA,
    _logits,
    adaptive_generator_weight,
    discriminator_adversarial_loss,
    discriminator_trains,
    frozen_discriminator_logits,
    gan_ramp_factor,
    generator_adversarial_loss,
    lecam_regularization,
    r1_penalty,
)

ReconstructionLossType = Literal["l1", "mse"]
# The model configs' vocabulary (`BaseVQConfig.reconstruction_loss_type`, stored in config.json files).
RECONSTRUCTION_LOSS_TYPES = ("l1", "mse")
# Older spellings, accepted and normalised: this objective used to call the squared error "l2".
RECONSTRUCTION_LOSS_ALIASES = {"l2": "mse"}


def normalize_reconstruction_loss_type(loss_type: str, field: str = "reconstruction_loss_type") -> str:
    """`loss_type` in the model configs' vocabulary (`"l1"` or `"mse"`), with `"l2"` read as `"mse"`.

    Raises:
        `ValueError`: naming `field` when `loss_type` is none of `"l1"`, `"mse"`, `"l2"`.
    """
    loss_type = RECONSTRUCTION_LOSS_ALIASES.get(loss_type, loss_type)
    if loss_type not in RECONSTRUCTION_LOSS_TYPES:
        raise config_error(
            field,
            f"one of {RECONSTRUCTION_LOSS_TYPES} (or the alias 'l2' for 'mse')",
            loss_type,
            "Use the model config's `reconstruction_loss_type`; 'l1' is taming's.",
        )
    return loss_type


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, loss_type: ReconstructionLossType | Literal["l2"] = "l1"
) -> torch.Tensor:
    """Mean absolute (`"l1"`, taming's VQ-GAN) or squared (`"mse"`, alias `"l2"`) pixel error over every element.

    The same reduction as the models' `forward` (`output.reconstruction_loss`), which computes it in fp32.
    """
    if normalize_reconstruction_loss_type(loss_type, field="loss_type") == "l1":
        return F.l1_loss(reconstruction, target)
    return F.mse_loss(reconstruction, target)


# `VQGANLoss.generator_loss` has an argument of the same name, which shadows the function inside it.
_pixel_loss = reconstruction_loss


@dataclass
class VQGANLossConfig:
    r"""
    Weights and schedule of the VQ-GAN objective. A plain dataclass: training arguments embed it.

    Args:
        reconstruction_loss_type (`str`, *optional*, defaults to `"l1"`):
            `"l1"` (taming) or `"mse"` pixel loss, the vocabulary of the model configs' field of the same name
            (pass `model.config.reconstruction_loss_type`). `"l2"` is accepted as an alias and stored as `"mse"`.
        reconstruction_weight (`float`, *optional*, defaults to 1.0):
            Weight of the pixel loss.
        perceptual_weight (`float`, *optional*, defaults to 1.0):
            Weight of the LPIPS term (taming's `perceptual_weight`). 0 disables it.
        gan_loss_type (`str`, *optional*, defaults to `"hinge"`):
            `"hinge"` (taming), `"non_saturating"` or `"vanilla"`.
        disc_weight (`float`, *optional*, defaults to 0.8):
            Multiplies the adaptive weight (taming's VQ-GAN configs use 0.8).
        use_adaptive_weight (`bool`, *optional*, defaults to `True`):
            Balance the GAN gradient against the reconstruction gradient at the decoder's last layer. If `False`
            the GAN term's weight is `disc_weight` times the ramp.
        adaptive_weight_max (`float`, *optional*, defaults to 1e4):
            Upper clamp of the adaptive weight.
        adaptive_weight_delta (`float`, *optional*, defaults to 1e-4):
            δ in the adaptive weight's denominator.
        disc_start (`int`, *optional*, defaults to 10000):
            First step at which the generator's GAN term is on.
        disc_pretrain_steps (`int`, *optional*, defaults to 2000):
            The discriminator trains on reconstructions this many steps before `disc_start`.
        disc_ramp_steps (`int`, *optional*, defaults to 2000):
            Steps over which the generator's GAN weight ramps linearly from 0 to 1 after `disc_start`;
            0 switches it on at once (taming).
        lecam_weight (`float`, *optional*, defaults to 0.0):
            Weight of the LeCam regulariser in the discriminator loss (MAGVIT-v2 uses 0.001). 0 disables it.
        lecam_ema_decay (`float`, *optional*, defaults to 0.99):
            Decay of the LeCam anchors' moving averages.
        r1_weight (`float`, *optional*, defaults to 0.0):
            Weight of the R1 penalty (the paper's γ/2). 0 disables it.
    """

    reconstruction_loss_type: ReconstructionLossType = "l1"
    reconstruction_weight: float = 1.0
    perceptual_weight: float = 1.0
    gan_loss_type: GANLossType = "hinge"
    disc_weight: float = 0.8
    use_adaptive_weight: bool = True
    adaptive_weight_max: float = 1e4
    adaptive_weight_delta: float = 1e-4
    disc_start: int = 10000
    disc_pretrain_steps: int = 2000
    disc_ramp_steps: int = 2000
    lecam_weight: float = 0.0
    lecam_ema_decay: float = 0.99
    r1_weight: float = 0.0

    def __post_init__(self):
        self.reconstruction_loss_type = normalize_reconstruction_loss_type(self.reconstruction_loss_type)
        if self.gan_loss_type not in GAN_LOSS_TYPES:
            raise config_error("gan_loss_type", f"one of {GAN_LOSS_TYPES}", self.gan_loss_type, "Use 'hinge'.")
        for name in ("reconstruction_weight", "perceptual_weight", "disc_weight", "lecam_weight", "r1_weight"):
            if getattr(self, name) < 0:
                raise config_error(name, "a number >= 0", getattr(self, name), "Use 0 to disable the term.")
        if self.adaptive_weight_max <= 0 or self.adaptive_weight_delta <= 0:
            raise config_error(
                "adaptive_weight_max / adaptive_weight_delta",
                "numbers > 0",
                (self.adaptive_weight_max, self.adaptive_weight_delta),
                "Use taming's 1e4 and 1e-4.",
            )
        for name in ("disc_start", "disc_pretrain_steps", "disc_ramp_steps"):
            if getattr(self, name) < 0:
                raise config_error(name, "an integer >= 0", getattr(self, name), "Steps count from 0.")
        if not 0.0 <= self.lecam_ema_decay < 1.0:
            raise config_error("lecam_ema_decay", "a number in [0, 1)", self.lecam_ema_decay, "Use 0.99.")

    def gan_factor(self, step: int) -> float:
        """The generator's GAN ramp at `step` (see [`gan_ramp_factor`])."""
        return gan_ramp_factor(step, self.disc_start, self.disc_ramp_steps)

    def trains_discriminator(self, step: int) -> bool:
        """Whether the discriminator trains at `step` (see [`discriminator_trains`])."""
        return discriminator_trains(step, self.disc_start, self.disc_pretrain_steps)


@dataclass
class GeneratorLossOutput:
    """Terms of the autoencoder's loss; all tensors of shape `()`. `loss` is what to backpropagate."""

    loss: torch.Tensor
    reconstruction_loss: torch.Tensor
    perceptual_loss: torch.Tensor
    gan_loss: torch.Tensor
    gan_weight: torch.Tensor  # adaptive weight × disc_weight × ramp, detached
    quantizer_loss: torch.Tensor
    gan_factor: float = 0.0

    def to_logs(self) -> dict[str, float]:
        """Python floats for a logger (each `.item()` waits for the device, so call it at logging steps only)."""
        names = ("loss", "reconstruction_loss", "perceptual_loss", "gan_loss", "gan_weight", "quantizer_loss")
        return {**{name: getattr(self, name).item() for name in names}, "gan_factor": self.gan_factor}


@dataclass
class DiscriminatorLossOutput:
    """Terms of the discriminator's loss; all tensors of shape `()`. `loss` is what to backpropagate."""

    loss: torch.Tensor
    gan_loss: torch.Tensor
    lecam_loss: torch.Tensor
    r1_loss: torch.Tensor
    logits_real: torch.Tensor  # mean, detached
    logits_fake: torch.Tensor  # mean, detached

    def to_logs(self) -> dict[str, float]:
        """Python floats for a logger, keys prefixed `d_` (each `.item()` waits for the device)."""
        names = ("loss", "gan_loss", "lecam_loss", "r1_loss", "logits_real", "logits_fake")
        return {f"d_{name}": getattr(self, name).item() for name in names}


class VQGANLoss(nn.Module):
    r"""
    The VQ-GAN objective for a two-optimiser training loop:

    ```python
    loss_fn = VQGANLoss(
        VQGANLossConfig(reconstruction_loss_type=model.config.reconstruction_loss_type, disc_start=0),
        perceptual=load_lpips("vgg16"),
    )
    out = model(images)
    g = loss_fn.generator_loss(images, out.reconstruction, discriminator=disc, step=step,
                               last_layer=model.get_last_layer(), quantizer_loss=out.quantizer_loss,
                               reconstruction_loss=out.reconstruction_loss)
    g.loss.backward(); opt_g.step(); opt_g.zero_grad()
    if loss_fn.config.trains_discriminator(step):
        d = loss_fn.discriminator_loss(images, out.reconstruction, discriminator=disc)
        d.loss.backward(); opt_d.step(); opt_d.zero_grad()
    ```

    The generator step never writes gradients into the discriminator, and the discriminator step never into the
    autoencoder (reconstructions are detached), so the two backward passes can share one forward pass.

    Args:
        config ([`VQGANLossConfig`]): weights and schedule.
        perceptual (`nn.Module`, *optional*): a frozen perceptual distance `(x̂, x) -> (B,)`, e.g.
            `hf_vq.losses.load_lpips("vgg16")`. Required when `config.perceptual_weight > 0`.
    """

    def __init__(self, config: VQGANLossConfig, perceptual: nn.Module | None = None):
        super().__init__()
        if config.perceptual_weight > 0 and perceptual is None:
            raise ValueError(
                "`perceptual` is required when `perceptual_weight` > 0: pass `load_lpips('vgg16')`, or set "
                "`perceptual_weight=0` to train without the perceptual loss."
            )
        self.config = config
        self.perceptual = perceptual
        # Checkpoint `loss_fn.lecam` (its state_dict) with the optimisers; the LPIPS weights need no saving.
        self.lecam = LeCamEMA(config.lecam_ema_decay) if config.lecam_weight > 0 else None

    def generator_loss(
        self,
        inputs: torch.Tensor,
        reconstructions: torch.Tensor,
        *,
        discriminator: nn.Module | None,
        step: int,
        last_layer: torch.Tensor | None = None,
        quantizer_loss: torch.Tensor | None = None,
        reconstruction_loss: torch.Tensor | None = None,
    ) -> GeneratorLossOutput:
        """
        `w_rec·rec + w_p·LPIPS + λ·disc_weight·ramp(step)·L_G + quantizer_loss`.

        Args:
            inputs (`torch.Tensor` of shape `(B, C, H, W)`): the images, in [-1, 1].
            reconstructions (`torch.Tensor` of shape `(B, C, H, W)`): the autoencoder's output (not detached).
            discriminator (`nn.Module`, *optional*): the unwrapped discriminator; unused while the GAN term is off.
            step (`int`): the optimisation step, for the warm-up and ramp.
            last_layer (`torch.Tensor`, *optional*): `model.get_last_layer()`; required for the adaptive weight.
            quantizer_loss (`torch.Tensor`, *optional*): the model's codebook + commitment loss.
            reconstruction_loss (`torch.Tensor` of shape `()`, *optional*):
                The model's own pixel loss, `output.reconstruction_loss`: the unweighted mean over every element of
                `reconstructions` against `inputs`, of the type `config.reconstruction_loss_type`, in fp32 and not
                detached. Given, it is used as is (weighted by `reconstruction_weight` here) instead of computing
                the same value a second time; unset, it is computed from `reconstructions` and `inputs`.
        """
        cfg = self.config
        if reconstruction_loss is None:
            rec = _pixel_loss(reconstructions, inputs, cfg.reconstruction_loss_type)
        elif reconstruction_loss.ndim != 0:
            raise ValueError(
                "`reconstruction_loss` must be the model's scalar mean pixel loss (`output.reconstruction_loss`, "
                f"shape ()); got shape {tuple(reconstruction_loss.shape)}. Pass `output.reconstruction_loss` or "
                "leave it unset."
            )
        else:
            rec = reconstruction_loss
        zero = rec.new_zeros(())
        perceptual = zero
        if cfg.perceptual_weight > 0:
            perceptual = self.perceptual(reconstructions, inputs).mean()
        nll = cfg.reconstruction_weight * rec + cfg.perceptual_weight * perceptual

        gan, gan_weight = zero, zero
        factor = cfg.gan_factor(step)
        if factor > 0 and cfg.disc_weight > 0:
            if discriminator is None:
                raise ValueError(f"`discriminator` is required from step {cfg.disc_start} (`disc_start`) on.")
            gan = generator_adversarial_loss(
                frozen_discriminator_logits(discriminator, reconstructions), cfg.gan_loss_type
            )
            if not cfg.use_adaptive_weight:
                adaptive = rec.new_ones(())
            elif not torch.is_grad_enabled():
                adaptive = zero  # evaluation: no graph to take gradients from (taming reports 0 too)
            elif last_layer is None:
                raise ValueError("`last_layer` (model.get_last_layer()) is required for the adaptive weight.")
            else:
                adaptive = adaptive_generator_weight(
                    nll, gan, last_layer, cfg.adaptive_weight_max, cfg.adaptive_weight_delta
                )
            gan_weight = adaptive * cfg.disc_weight * factor

        quantizer = quantizer_loss if quantizer_loss is not None else zero
        loss = nll + gan_weight * gan + quantizer
        return GeneratorLossOutput(loss, rec, perceptual, gan, gan_weight, quantizer, factor)

    def discriminator_loss(
        self, inputs: torch.Tensor, reconstructions: torch.Tensor, *, discriminator: nn.Module
    ) -> DiscriminatorLossOutput:
        """
        GAN loss of the discriminator on real `inputs` and detached `reconstructions`, plus LeCam and R1 when
        their weights are > 0. Call it only when `config.trains_discriminator(step)`.
        """
        cfg = self.config
        real = inputs.detach()
        if cfg.r1_weight > 0:
            real.requires_grad_(True)
        logits_real = _logits(discriminator(real))
        logits_fake = _logits(discriminator(reconstructions.detach()))
        gan = discriminator_adversarial_loss(logits_real, logits_fake, cfg.gan_loss_type)
        zero = gan.new_zeros(())
        loss, lecam, r1 = gan, zero, zero
        if self.lecam is not None:
            self.lecam.update(logits_real, logits_fake)
            lecam = lecam_regularization(logits_real, logits_fake, self.lecam.real, self.lecam.fake)
            loss = loss + cfg.lecam_weight * lecam
        if cfg.r1_weight > 0:
            r1 = r1_penalty(logits_real, real)
            loss = loss + cfg.r1_weight * r1
        mean_real, mean_fake = logits_real.detach().mean(), logits_fake.detach().mean()
        return DiscriminatorLossOutput(loss, gan, lecam, r1, mean_real, mean_fake)
