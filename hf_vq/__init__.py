"""hf-vq: VQ-VAE and VQ-GAN image tokenizers as Hugging Face transformers models.

Load a tokenizer, turn images into token grids and back::

    from hf_vq import VQGANModel
    model = VQGANModel.from_pretrained("org/name").eval()
    tokens = model.encode_to_indices(pixel_values)   # (B, h, w) LongTensor
    images = model.decode_indices(tokens)            # (B, C, H, W) in config.pixel_range
"""

__version__ = "0.1.0"

from .modeling import (
    BaseQuantizer,
    BaseVQConfig,
    QuantizerOutput,
    VQDecoderOutput,
    VQEncoderOutput,
    VQGANConfig,
    VQGANDiscriminator,
    VQGANDiscriminatorConfig,
    VQGANDiscriminatorOutput,
    VQGANLoss,
    VQGANLossConfig,
    VQGANModel,
    VQModelOutput,
    VQPreTrainedModel,
    VQVAEConfig,
    VQVAEModel,
    build_quantizer,
)

__all__ = [
    "BaseQuantizer",
    "BaseVQConfig",
    "QuantizerOutput",
    "VQDecoderOutput",
    "VQEncoderOutput",
    "VQGANConfig",
    "VQGANDiscriminator",
    "VQGANDiscriminatorConfig",
    "VQGANDiscriminatorOutput",
    "VQGANLoss",
    "VQGANLossConfig",
    "VQGANModel",
    "VQModelOutput",
    "VQPreTrainedModel",
    "VQVAEConfig",
    "VQVAEModel",
    "__version__",
    "build_quantizer",
]
