"""hf-vq models and configs. Importing this package registers them with transformers' Auto classes."""

from transformers import AutoConfig, AutoModel

from .configuration_utils import BaseVQConfig
from .configuration_vqgan import VQGANConfig
from .configuration_discriminator import VQGANDiscriminatorConfig
from .configuration_vqvae import VQVAEConfig
from .losses import VQGANLoss, VQGANLossConfig
from .modeling_discriminator import VQGANDiscriminator, VQGANDiscriminatorOutput
from .modeling_utils import VQDecoderOutput, VQEncoderOutput, VQModelOutput, VQPreTrainedModel
from .modeling_vqgan import VQGANModel
from .modeling_vqvae import VQVAEModel
from .quantizers import BaseQuantizer, QuantizerOutput, build_quantizer

for _config, _model in (
    (VQGANConfig, VQGANModel),
    (VQVAEConfig, VQVAEModel),
    (VQGANDiscriminatorConfig, VQGANDiscriminator),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)

__all__ = [
    "BaseQuantizer",
    "BaseVQConfig",
    "QuantizerOutput",
    "VQDecoderOutput",
    "VQEncoderOutput",
    "VQGANDiscriminator",
    "VQGANDiscriminatorConfig",
    "VQGANDiscriminatorOutput",
    "VQGANLoss",
    "VQGANLossConfig",
    "VQGANConfig",
    "VQGANModel",
    "VQModelOutput",
    "VQPreTrainedModel",
    "VQVAEConfig",
    "VQVAEModel",
    "build_quantizer",
]
