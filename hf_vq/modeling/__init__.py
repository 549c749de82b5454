"""hf-vq models and configs. Importing this package registers them with transformers' Auto classes.

The folder is flat and imports nothing else of hf-vq (it ships as remote code): see `modeling_utils` for the one
hook (`register_integrations`) through which the rest of hf-vq serves the models: model cards, Hub
uploads, diffusers conversion.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_discriminator import VQGANDiscriminatorConfig
from .configuration_prior import VQPriorConfig, tokenizer_config_hash
from .configuration_utils import BaseVQConfig
from .configuration_vqgan import VQGANConfig
from .configuration_vqvae import VQVAEConfig
from .configuration_vqvae2 import VQVAE2Config
from .modeling_discriminator import VQGANDiscriminator, VQGANDiscriminatorOutput
from .modeling_outputs import QuantizerOutput, VQDecoderOutput, VQEncoderOutput, VQModelOutput, VQVAE2ModelOutput
from .modeling_prior import VQPriorForCausalLM
from .modeling_utils import SingleGridMixin, VQPreTrainedModel, register_integrations
from .modeling_vqgan import VQGANModel
from .modeling_vqvae import VQVAEModel
from .modeling_vqvae2 import VQVAE2Model
from .prior_interface import VQPriorMixin
from .quantizer_base import BaseQuantizer
from .quantizers import build_quantizer
from .token_layout import TokenLayout, TokenLevel

for _config, _model in (
    (VQGANConfig, VQGANModel),
    (VQVAEConfig, VQVAEModel),
    (VQVAE2Config, VQVAE2Model),
    (VQGANDiscriminatorConfig, VQGANDiscriminator),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)

# Every prior family registers with AutoModel, the one Auto class they share (how `load_pipeline` and remote code
# load a prior of any family); the autoregressive one also with AutoModelForCausalLM, as transformers' causal LMs.
AutoConfig.register(VQPriorConfig.model_type, VQPriorConfig, exist_ok=True)
AutoModel.register(VQPriorConfig, VQPriorForCausalLM, exist_ok=True)
AutoModelForCausalLM.register(VQPriorConfig, VQPriorForCausalLM, exist_ok=True)

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
    "VQGANModel",
    "VQModelOutput",
    "VQPreTrainedModel",
    "VQPriorConfig",
    "VQPriorForCausalLM",
    "VQPriorMixin",
    "VQVAE2Config",
    "VQVAE2Model",
    "VQVAE2ModelOutput",
    "VQVAEConfig",
    "VQVAEModel",
    "build_quantizer",
    "register_integrations",
    "tokenizer_config_hash",
]

# The masked (MaskGIT) prior family: AutoModel only (it is no causal LM).
from .configuration_masked_prior import MaskedPriorConfig  # noqa: E402
from .modeling_masked_prior import VQPriorForMaskedLM  # noqa: E402

AutoConfig.register(MaskedPriorConfig.model_type, MaskedPriorConfig, exist_ok=True)
AutoModel.register(MaskedPriorConfig, VQPriorForMaskedLM, exist_ok=True)
__all__ += ["MaskedPriorConfig", "VQPriorForMaskedLM"]
