"""The tokenizers `hf-vq train` knows (`--model-type`), with the small models its main job trains by default.

Open: a new tokenizer trains with one entry, `TOKENIZER_TYPES["name"] = TokenizerType(...)`, registered before the
arguments are parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel

from ..modeling import VQGANConfig, VQGANModel, VQVAE2Config, VQVAE2Model, VQVAEConfig, VQVAEModel


@dataclass(frozen=True)
class TokenizerType:
    """One `--model-type`: how `hf-vq train` builds, freezes and trains that tokenizer.

    Args:
        config_class (`type[PretrainedConfig]`): the model's config class.
        model_class (`type[PreTrainedModel]`): the model class; also how a model loaded with `--init-from` is
            recognised.
        defaults (`dict`): config fields of the main job's small model, used when `--model-config` is unset
            (`sample_size` comes from `--resolution`).
        adversarial (`bool`): trained with a discriminator and the VQ-GAN objective (else with the model's own loss).
        encoder_modules (`tuple[str, ...]`): attributes that `--freeze-encoder` freezes.
    """

    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    defaults: dict[str, Any]
    adversarial: bool = False
    encoder_modules: tuple[str, ...] = ("encoder", "quant_conv")


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
    # init and dead-code restarts, are added to every model trained from scratch: see `tokenizer.build_models`.)
    codebook_dim=8,
    codebook_l2_norm=True,
    norm_num_groups=8,
    sample_size=64,
)
DEFAULT_VQVAE_CONFIG = dict(
    hidden_channels=64, residual_hidden_channels=32, latent_channels=16, num_vq_embeddings=512, sample_size=64
)
# VQ-VAE-2 at the main job's scale: a 16x16 bottom grid (f4) under an 8x8 top grid (f8) at 64 px.
DEFAULT_VQVAE2_CONFIG = dict(
    hidden_channels=64,
    residual_hidden_channels=32,
    latent_channels=64,
    num_vq_embeddings=512,
    vq_embed_dim=32,
    top_num_vq_embeddings=512,
    top_vq_embed_dim=32,
    sample_size=64,
)
DEFAULT_DISCRIMINATOR_CONFIG = dict(base_channels=32, num_layers=2, norm_num_groups=8)

# `--model-type` -> tokenizer. Open: register a new tokenizer with `TOKENIZER_TYPES["name"] = TokenizerType(...)`.
TOKENIZER_TYPES: dict[str, TokenizerType] = {
    "vqgan": TokenizerType(VQGANConfig, VQGANModel, DEFAULT_VQGAN_CONFIG, adversarial=True),
    "vqvae": TokenizerType(VQVAEConfig, VQVAEModel, DEFAULT_VQVAE_CONFIG),
    # The tokens of VQ-VAE-2 depend on both encoders, the top codes decoded back to the bottom grid, and both 1x1
    # convs into code space: --freeze-encoder freezes all of them, so a fine-tuned decoder keeps the token ids valid.
    "vqvae2": TokenizerType(
        VQVAE2Config,
        VQVAE2Model,
        DEFAULT_VQVAE2_CONFIG,
        encoder_modules=("encoder", "top_encoder", "top_quant_conv", "top_decoder", "quant_conv"),
    ),
}


__all__ = [
    "DEFAULT_DISCRIMINATOR_CONFIG",
    "DEFAULT_VQGAN_CONFIG",
    "DEFAULT_VQVAE2_CONFIG",
    "DEFAULT_VQVAE_CONFIG",
    "TOKENIZER_TYPES",
    "TokenizerType",
]
