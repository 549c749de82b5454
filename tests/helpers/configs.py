"""The tiny configs tests build their models from, in one place: each tokenizer family's smallest consistent
model (every block type of the full-size one, sub-second on a CPU), the discriminator, and the prior.

Overrides go through the `tiny_*_config(**overrides)` functions; the dicts are for flags (`--model-config`) and
for configs built elsewhere (`VQPriorConfig.from_tokenizer`, `json.dumps`).
"""

from __future__ import annotations

from hf_vq import VQGANConfig, VQVAE2Config, VQVAEConfig

# Two levels (f=2) with attention at the lower one, 16 codes of 4 dims, 32 px.
TINY_VQGAN = {
    "block_out_channels": [8, 16],
    "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],  # what the config derives from the down blocks
    "layers_per_block": 1,
    "latent_channels": 4,
    "num_vq_embeddings": 16,
    "norm_num_groups": 4,
    "sample_size": 32,
}

# A 16 px tokenizer with a 4x4 grid (f=4): what a prior trains on in a fraction of a second.
TINY_TOKENIZER = {"block_out_channels": [8, 16, 16], "down_block_types": ["DownEncoderBlock2D"] * 3, "sample_size": 16}

# Two strided convolutions (f=4) and one residual block, 16 codes of 4 dims.
TINY_VQVAE = {
    "hidden_channels": 16,
    "residual_hidden_channels": 8,
    "num_residual_layers": 1,
    "latent_channels": 4,
    "num_vq_embeddings": 16,
}

# A 4x4 top grid of 16 codes over an 8x8 bottom grid of 32 codes at 32 px (f=8 and f=4), codes of 4 dims.
TINY_VQVAE2 = {
    "hidden_channels": 16,
    "residual_hidden_channels": 8,
    "num_residual_layers": 1,
    "latent_channels": 8,
    "num_vq_embeddings": 32,
    "vq_embed_dim": 4,
    "top_num_vq_embeddings": 16,
    "top_vq_embed_dim": 4,
    "sample_size": 32,
}

TINY_DISCRIMINATOR = {"base_channels": 8, "num_layers": 2, "norm_num_groups": 4}

# The prior's transformer (a Llama): two layers of width 32.
TINY_TRANSFORMER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def tiny_vqgan_config(**overrides) -> VQGANConfig:
    """`TINY_VQGAN` with `overrides`; the up blocks are left to the config to derive, so overriding the levels or
    the down blocks alone gives a consistent model."""
    fields = {name: value for name, value in TINY_VQGAN.items() if name != "up_block_types"}
    return VQGANConfig(**{**fields, **overrides})


def tiny_vqvae_config(**overrides) -> VQVAEConfig:
    return VQVAEConfig(**{**TINY_VQVAE, **overrides})


def tiny_vqvae2_config(**overrides) -> VQVAE2Config:
    return VQVAE2Config(**{**TINY_VQVAE2, **overrides})
