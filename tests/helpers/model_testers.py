"""The shared ModelTester set (transformers' pattern): one tester per tokenizer family, with the tiny config and
what the shared checks in `test_modeling.py` and `test_transformers_conventions.py` need to know about the
model's parts. A new family joins every shared check by adding its tester to `TESTERS`.

The checks read a model's ids through `model.token_layout` (one tensor for a single grid, a tuple of levels,
coarse to fine, for a hierarchy), never by assuming one tensor.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hf_vq import (
    VQGANConfig,
    VQGANModel,
    VQModelOutput,
    VQVAE2Config,
    VQVAE2Model,
    VQVAE2ModelOutput,
    VQVAEConfig,
    VQVAEModel,
)

from .configs import tiny_vqgan_config, tiny_vqvae2_config, tiny_vqvae_config

# Config errors every family shares (the fields of BaseVQConfig), and the fragment each message must contain.
SHARED_CONFIG_ERRORS = (
    ({"commitment_cost": -0.1}, "commitment_cost"),
    ({"num_vq_embeddings": 0}, "num_vq_embeddings"),
    ({"pixel_range": (1.0, -1.0)}, "pixel_range"),
)


class ModelTester:
    model_class: ClassVar[type]
    config_class: ClassVar[type]
    output_class: ClassVar[type] = VQModelOutput
    # Ids per level, coarse to fine, as `token_layout` describes them for the tiny config.
    codebook_sizes: ClassVar[tuple[int, ...]]
    # Image side / grid side per level, coarse to fine: written out here, not read from the model under test.
    grid_factors: ClassVar[tuple[int, ...]]
    # The codebook parameters (one per level), and the first convolution of each encoder.
    codebooks: ClassVar[tuple[str, ...]]
    first_encoder_parameters: ClassVar[tuple[str, ...]]
    # Modules before the (last) quantizer and after the quantizers, by parameter-name prefix.
    encoder_prefixes: ClassVar[tuple[str, ...]]
    decoder_prefixes: ClassVar[tuple[str, ...]]
    # One grid with diffusers' `VQModel` API: `encode` to latents, `decode` of latents, a `quantize` module.
    single_grid: ClassVar[bool] = True
    # Overrides that put randomness in the forward pass (dropout), for the "eval is deterministic" check.
    random_forward: ClassVar[dict[str, Any]] = {}
    # The family's own config errors (beyond SHARED_CONFIG_ERRORS): (overrides, message fragment).
    config_errors: ClassVar[tuple[tuple[dict[str, Any], str], ...]] = ()
    # Stage outputs (`output_hidden_states=True`) for a (2, 3, 32, 32) input: encoder stages, then decoder stages.
    hidden_state_shapes: ClassVar[tuple[tuple[int, int, int], ...]]

    @staticmethod
    def config(**overrides):
        raise NotImplementedError

    @staticmethod
    def last_stage_to_output(model, last_hidden_state):
        """What the decoder does after its last recorded stage, to check that stage is the real activation."""
        return model.decoder.conv_out(last_hidden_state)


class VQGANTester(ModelTester):
    model_class = VQGANModel
    config_class = VQGANConfig
    codebook_sizes = (16,)
    grid_factors = (2,)
    codebooks = ("quantize.embedding.weight",)
    first_encoder_parameters = ("encoder.conv_in.weight",)
    encoder_prefixes = ("encoder.", "quant_conv.")
    decoder_prefixes = ("decoder.", "post_quant_conv.")
    random_forward: ClassVar[dict[str, Any]] = {"dropout": 0.5}
    config_errors = (
        ({"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"]}, "down_block_types"),
        ({"up_block_types": ["UpDecoderBlock2D"] * 3}, "up_block_types"),
        ({"down_block_types": ["DownEncoderBlock2D", "CrossAttnDownBlock2D"]}, "CrossAttnDownBlock2D"),
        ({"norm_num_groups": 3}, "norm_num_groups"),
        ({"sample_size": 31}, "sample_size.*divisible by the downsampling factor 2.*Use 32"),
        ({"dropout": 1.5}, "dropout"),
    )
    # conv_in, level 0 (downsampled), level 1, mid-block | conv_in, mid-block, level 0 (upsampled), level 1
    hidden_state_shapes = (
        (8, 32, 32),
        (8, 16, 16),
        (16, 16, 16),
        (16, 16, 16),
        (16, 16, 16),
        (16, 16, 16),
        (16, 32, 32),
        (8, 32, 32),
    )

    @staticmethod
    def config(**overrides):
        return tiny_vqgan_config(**overrides)

    @staticmethod
    def last_stage_to_output(model, last_hidden_state):
        import torch

        return model.decoder.conv_out(torch.nn.functional.silu(model.decoder.conv_norm_out(last_hidden_state)))


class VQVAETester(ModelTester):
    model_class = VQVAEModel
    config_class = VQVAEConfig
    codebook_sizes = (16,)
    grid_factors = (4,)
    codebooks = ("quantize.embedding.weight",)
    first_encoder_parameters = ("encoder.downsamplers.0.weight",)
    encoder_prefixes = ("encoder.", "quant_conv.")
    decoder_prefixes = ("decoder.", "post_quant_conv.")
    config_errors = (({"hidden_channels": 0}, "hidden_channels"), ({"num_residual_layers": -1}, "num_residual_layers"))
    # two strided convs, residual stack | residual stack, the upsampling conv before the last
    hidden_state_shapes = ((16, 16, 16), (16, 8, 8), (16, 8, 8), (16, 8, 8), (16, 16, 16))

    @staticmethod
    def config(**overrides):
        return tiny_vqvae_config(**overrides)


class VQVAE2Tester(ModelTester):
    model_class = VQVAE2Model
    config_class = VQVAE2Config
    output_class = VQVAE2ModelOutput
    codebook_sizes = (16, 32)  # top, bottom
    grid_factors = (8, 4)
    codebooks = ("quantize_top.embedding.weight", "quantize_bottom.embedding.weight")
    first_encoder_parameters = ("encoder.downsamplers.0.weight", "top_encoder.downsamplers.0.weight")
    # The top decoder runs before the bottom quantizer: it brings the top codes to the bottom grid.
    encoder_prefixes = ("encoder.", "top_encoder.", "top_quant_conv.", "top_decoder.", "quant_conv.")
    decoder_prefixes = ("decoder.", "upsample_top.")
    single_grid = False
    config_errors = (
        ({"quantizer_type": "fsq", "fsq_levels": [8, 4]}, "top_fsq_levels"),
        ({"quantizer_type": "residual_vq", "num_quantizers": 2}, "quantizer_type"),
        ({"top_num_vq_embeddings": 0}, "top_num_vq_embeddings"),
        ({"sample_size": 36}, "sample_size"),
    )
    # bottom encoder (2 strided convs, residual stack) | top encoder | top decoder | decoder
    hidden_state_shapes = (
        (16, 16, 16),
        (16, 8, 8),
        (16, 8, 8),
        (16, 4, 4),
        (16, 4, 4),
        (16, 4, 4),
        (16, 8, 8),
        (16, 16, 16),
    )

    @staticmethod
    def config(**overrides):
        return tiny_vqvae2_config(**overrides)


TESTERS = [VQGANTester, VQVAETester, VQVAE2Tester]
SINGLE_GRID_TESTERS = [tester for tester in TESTERS if tester.single_grid]
