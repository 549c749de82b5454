"""The VQ-GAN objective (Esser et al. 2021, https://arxiv.org/abs/2012.09841) as small, tested pieces.

Pure functions: GAN losses on discriminator *logits* (hinge, non-saturating, vanilla), the adaptive generator
weight, the warm-up / ramp schedule, LeCam and R1 regularisers, the pixel reconstruction loss. `VQGANLoss`
puts them together for a training loop: one call for the generator (autoencoder) step, one for the
discriminator step, each touching only its own side's gradients.

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

import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_utils import config_error

logger = logging.getLogger(__name__)

GANLossType = Literal["hinge", "non_saturating", "vanilla"]
GAN_LOSS_TYPES = ("hinge", "non_saturating", "vanilla")
RECONSTRUCTION_LOSS_TYPES = ("l1", "l2")


# ----------------------------------------------------------------------------------------------------------
# GAN losses. Every argument is a tensor of raw discriminator logits, any shape (PatchGAN grids included);
# means run over every element. "real" logits are D(x), "fake" logits are D(x̂) for reconstructions x̂.
# ----------------------------------------------------------------------------------------------------------


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """`½ (E[max(0, 1 − D(x))] + E[max(0, 1 + D(x̂))])` (Lim & Ye 2017; taming's `hinge_d_loss`). Minimum 0."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """`−E[D(x̂)]`: the generator raises the discriminator's score of its reconstructions."""
    return -logits_fake.mean()


def bce_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """`½ (E[−log σ(D(x))] + E[−log(1 − σ(D(x̂)))])`, the cross-entropy of the original GAN; shared by the
    non-saturating and vanilla objectives. `−log σ(a) = softplus(−a)` and `−log(1 − σ(a)) = softplus(a)`."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def non_saturating_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """`E[−log σ(D(x̂))]` = BCE(logits=D(x̂), target=1) (Goodfellow et al. 2014, §3): strong gradients while the
    discriminator still wins, unlike the vanilla loss."""
    return F.softplus(-logits_fake).mean()


def vanilla_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """`E[log(1 − σ(D(x̂)))] = −E[softplus(D(x̂))]`, the minimax generator loss. It saturates (vanishing
    gradient) when the discriminator confidently rejects reconstructions; kept for completeness."""
    return -F.softplus(logits_fake).mean()


def discriminator_adversarial_loss(
    logits_real: torch.Tensor, logits_fake: torch.Tensor, loss_type: GANLossType = "hinge"
) -> torch.Tensor:
    """The discriminator's GAN loss for `loss_type` (`"hinge"`, `"non_saturating"` or `"vanilla"`)."""
    if loss_type == "hinge":
        return hinge_discriminator_loss(logits_real, logits_fake)
    if loss_type in ("non_saturating", "vanilla"):
        return bce_discriminator_loss(logits_real, logits_fake)
    raise ValueError(f"`loss_type` must be one of {GAN_LOSS_TYPES}; got {loss_type!r}.")


def generator_adversarial_loss(logits_fake: torch.Tensor, loss_type: GANLossType = "hinge") -> torch.Tensor:
    """The generator's GAN loss for `loss_type` (`"hinge"`, `"non_saturating"` or `"vanilla"`)."""
    if loss_type == "hinge":
        return hinge_generator_loss(logits_fake)
    if loss_type == "non_saturating":
        return non_saturating_generator_loss(logits_fake)
    if loss_type == "vanilla":
        return vanilla_generator_loss(logits_fake)
    raise ValueError(f"`loss_type` must be one of {GAN_LOSS_TYPES}; got {loss_type!r}.")


# ----------------------------------------------------------------------------------------------------------
# Regularisers of the discriminator
# ----------------------------------------------------------------------------------------------------------


def lecam_regularization(
    logits_real: torch.Tensor,
    logits_fake: torch.Tensor,
    ema_real: torch.Tensor | float,
    ema_fake: torch.Tensor | float,
) -> torch.Tensor:
    """
    LeCam regulariser (Tseng et al. 2021, https://arxiv.org/abs/2104.03310), in the form of the authors' code:
    `E[max(0, D(x) − α_F)²] + E[max(0, α_R − D(x̂))²]`, with `α_R`, `α_F` moving averages of the discriminator's
    mean real and fake logits ([`LeCamEMA`]). It keeps the discriminator's scores from drifting apart, which
    matters most on small data sets.
    """
    return F.relu(logits_real - ema_fake).pow(2).mean() + F.relu(ema_real - logits_fake).pow(2).mean()


class LeCamEMA(nn.Module):
    """
    Bias-corrected moving averages of the discriminator's mean real and fake logits, the anchors of
    [`lecam_regularization`]. A module so it moves with `.to()` and checkpoints through `state_dict()`.

    Args:
        decay (`float`, *optional*, defaults to 0.99): the authors' decay.
    """

    def __init__(self, decay: float = 0.99):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise config_error("decay", "a number in [0, 1)", decay, "Use 0.99.")
        self.decay = decay
        self.register_buffer("biased_real", torch.zeros(()))
        self.register_buffer("biased_fake", torch.zeros(()))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        self.biased_real.mul_(self.decay).add_((1.0 - self.decay) * logits_real.detach().float().mean())
        self.biased_fake.mul_(self.decay).add_((1.0 - self.decay) * logits_fake.detach().float().mean())
        self.num_updates.add_(1)

    def _debiased(self, value: torch.Tensor) -> torch.Tensor:
        # Zero-debiasing as in the authors' TensorFlow code: divide by 1 − decay^n.
        n = self.num_updates.clamp(min=1).to(value.dtype)
        return value / (1.0 - self.decay**n)

    @property
    def real(self) -> torch.Tensor:
        return self._debiased(self.biased_real)

    @property
    def fake(self) -> torch.Tensor:
        return self._debiased(self.biased_fake)


def r1_penalty(logits_real: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """
    R1 gradient penalty (Mescheder et al. 2018, https://arxiv.org/abs/1801.04406): `E_x ‖∇_x Σ D(x)‖²`, summing a
    PatchGAN's logits per image. `real_images` must have had `requires_grad_(True)` before the discriminator
    saw them. The paper's `γ/2` is the weight this is multiplied by (`r1_weight`). The graph is kept
    (`create_graph=True`) so the penalty trains the discriminator.

    Returns:
        `torch.Tensor` of shape `()`.
    """
    (grad,) = torch.autograd.grad(logits_real.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


# ----------------------------------------------------------------------------------------------------------
# Generator side
# ----------------------------------------------------------------------------------------------------------


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, loss_type: Literal["l1", "l2"] = "l1"
) -> torch.Tensor:
    """Mean absolute (`"l1"`, taming's VQ-GAN) or squared (`"l2"`) pixel error."""
    if loss_type == "l1":
        return F.l1_loss(reconstruction, target)
    if loss_type == "l2":
        return F.mse_loss(reconstruction, target)
    raise ValueError(f"`loss_type` must be one of {RECONSTRUCTION_LOSS_TYPES}; got {loss_type!r}.")


def adaptive_generator_weight(
    rec_loss: torch.Tensor,
    g_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    delta: float = 1e-4,
) -> torch.Tensor:
    """
    VQ-GAN's adaptive weight λ = ‖∇_L rec_loss‖ / (‖∇_L g_loss‖ + δ), clamped to `[0, max_weight]`, with `L` the
    decoder's last layer (Esser et al. 2021, eq. 7): it scales the GAN gradient to the size of the
    reconstruction gradient where both enter the decoder. Multiply it by `disc_weight`.

    Args:
        rec_loss (`torch.Tensor` of shape `()`):
            The reconstruction objective the GAN term is balanced against (pixel + perceptual loss).
        g_loss (`torch.Tensor` of shape `()`):
            The generator's GAN loss.
        last_layer (`torch.Tensor`):
            The parameter both are differentiated against: `model.get_last_layer()`.
        max_weight (`float`, *optional*, defaults to 1e4):
            Upper clamp (taming's).
        delta (`float`, *optional*, defaults to 1e-4):
            Keeps the ratio finite when the GAN gradient vanishes.

    Returns:
        `torch.Tensor` of shape `()`, detached: λ is a coefficient, not something to train through.
    """
    # retain_graph: the caller still backpropagates the total loss through the same graph.
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (g_grad,) = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    weight = rec_grad.norm() / (g_grad.norm() + delta)
    return weight.clamp(0.0, max_weight).detach()


def gan_ramp_factor(step: int, disc_start: int, ramp_steps: int = 0) -> float:
    """
    Multiplier of the generator's GAN term at optimisation step `step` (0-based): 0 before `disc_start`, then a
    linear ramp reaching 1 after `ramp_steps` steps: `min(1, (step − disc_start + 1) / ramp_steps)`.
    `ramp_steps=0` is taming's step function.
    """
    if step < disc_start:
        return 0.0
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, (step - disc_start + 1) / ramp_steps)


def discriminator_trains(step: int, disc_start: int, pretrain_steps: int = 0) -> bool:
    """Whether the discriminator takes an optimisation step at `step`: from `disc_start − pretrain_steps` on, so it
    has learned to tell reconstructions from photos by the time the generator starts listening to it."""
    return step >= disc_start - pretrain_steps


# ----------------------------------------------------------------------------------------------------------
# The assembled objective
# ----------------------------------------------------------------------------------------------------------


@dataclass
class VQGANLossConfig:
    r"""
    Weights and schedule of the VQ-GAN objective. A plain dataclass: training arguments embed it.

    Args:
        reconstruction_loss_type (`str`, *optional*, defaults to `"l1"`):
            `"l1"` (taming) or `"l2"` pixel loss.
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

    reconstruction_loss_type: Literal["l1", "l2"] = "l1"
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
        if self.reconstruction_loss_type not in RECONSTRUCTION_LOSS_TYPES:
            raise config_error(
                "reconstruction_loss_type",
                f"one of {RECONSTRUCTION_LOSS_TYPES}",
                self.reconstruction_loss_type,
                "Use 'l1'.",
            )
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


def _logits(output) -> torch.Tensor:
    """Logits from a discriminator that returns a tensor, a tuple or a `ModelOutput` (`.logits` first)."""
    if isinstance(output, torch.Tensor):
        return output
    return output[0]


def frozen_discriminator_logits(discriminator: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """
    `discriminator(images)` with the discriminator's parameters detached: gradients reach `images` (and the
    generator behind them) but never the discriminator, without toggling `requires_grad` on its parameters.
    Pass the unwrapped module (`accelerator.unwrap_model`), not a DistributedDataParallel wrapper.
    """
    params = {name: p.detach() for name, p in discriminator.named_parameters()}
    return _logits(torch.func.functional_call(discriminator, params, (images,)))


class VQGANLoss(nn.Module):
    r"""
    The VQ-GAN objective for a two-optimiser training loop:

    ```python
    loss_fn = VQGANLoss(VQGANLossConfig(disc_start=0), perceptual=load_lpips("vgg16"))
    out = model(images)
    g = loss_fn.generator_loss(images, out.reconstruction, discriminator=disc, step=step,
                               last_layer=model.get_last_layer(), quantizer_loss=out.quantizer_loss)
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
            `hf_vq.modeling.lpips.load_lpips("vgg16")`. Required when `config.perceptual_weight > 0`.
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
        """
        cfg = self.config
        rec = reconstruction_loss(reconstructions, inputs, cfg.reconstruction_loss_type)
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
