"""The tiny VQ-GAN most tests build: two levels (f=2) with attention at the lower one, 16 codes of 4 dims, 32 px.

Small enough to run anything on a CPU in a fraction of a second, with every block type the full-size model has.
"""

from hf_vq import VQGANConfig

TINY_VQGAN = dict(
    block_out_channels=[8, 16],
    down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],  # what the config derives from the down blocks
    layers_per_block=1,
    latent_channels=4,
    num_vq_embeddings=16,
    norm_num_groups=4,
    sample_size=32,
)


def tiny_vqgan_config(**overrides) -> VQGANConfig:
    """`TINY_VQGAN` with `overrides`; the up blocks are left to the config to derive, so overriding the levels or
    the down blocks alone gives a consistent model."""
    fields = {name: value for name, value in TINY_VQGAN.items() if name != "up_block_types"}
    return VQGANConfig(**{**fields, **overrides})
