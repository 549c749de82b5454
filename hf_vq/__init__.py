"""hf-vq: VQ-VAE and VQ-GAN image tokenizers as Hugging Face transformers models.

Load a tokenizer, turn images into token grids and back::

    from hf_vq import VQGANModel
    model = VQGANModel.from_pretrained("org/name").eval()
    tokens = model.encode_to_indices(pixel_values)   # (B, h, w) LongTensor
    images = model.decode_indices(tokens)            # (B, C, H, W) in config.pixel_range
"""

# Imported for what they register with the models (`register_integrations`): the model-card writer and Hub
# uploader, and the diffusers converters behind `to_diffusers` / `from_diffusers` (diffusers itself loads lazily).
from . import hub as _hub  # noqa: F401
from ._version import __version__
from .integrations import diffusers as _diffusers  # noqa: F401
from .losses import VQGANLoss, VQGANLossConfig
from .modeling import (
    BaseQuantizer,
    BaseVQConfig,
    QuantizerOutput,
    SingleGridMixin,
    TokenLayout,
    TokenLevel,
    VQDecoderOutput,
    VQEncoderOutput,
    VQGANConfig,
    VQGANDiscriminator,
    VQGANDiscriminatorConfig,
    VQGANDiscriminatorOutput,
    VQGANModel,
    VQModelOutput,
    VQPreTrainedModel,
    VQPriorConfig,
    VQPriorForCausalLM,
    VQVAE2Config,
    VQVAE2Model,
    VQVAE2ModelOutput,
    VQVAEConfig,
    VQVAEModel,
    build_quantizer,
)

__all__ = [
    "BaseQuantizer",
    "BaseVQConfig",
    "QuantizerOutput",
    "SingleGridMixin",
    "TokenLayout",
    "TokenLevel",
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
    "VQPriorConfig",
    "VQPriorForCausalLM",
    "VQVAE2Config",
    "VQVAE2Model",
    "VQVAE2ModelOutput",
    "VQVAEConfig",
    "VQVAEModel",
    "__version__",
    "build_quantizer",
]
