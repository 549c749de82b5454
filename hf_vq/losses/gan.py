"""The adversarial pieces of the VQ-GAN objective, as small, tested functions.

GAN losses on discriminator *logits* (hinge, non-saturating, vanilla), the LeCam and R1 regularisers of the
discriminator, VQ-GAN's adaptive generator weight, the warm-up / ramp schedule, and a call of the discriminator
that lets gradients reach the generator but not the discriminator. [`hf_vq.losses.VQGANLoss`] assembles them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.configuration_utils import config_error

GANLossType = Literal["hinge", "non_saturating", "vanilla"]
GAN_LOSS_TYPES = ("hinge", "non_saturating", "vanilla")


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
# Generator side: the adaptive weight and the schedule
# ----------------------------------------------------------------------------------------------------------


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
