"""hf-vq: VQ-VAE and VQ-GAN image tokenizers as Hugging Face transformers models.

Load a tokenizer, turn images into token grids and back::

    from hf_vq import VQGANModel
    model = VQGANModel.from_pretrained("org/name").eval()
    tokens = model.encode_to_indices(pixel_values)   # (B, h, w) LongTensor
    images = model.decode_indices(tokens)            # (B, C, H, W) in config.pixel_range

The names below are imported on first use (a module `__getattr__`), so `import hf_vq` and `hf-vq --help` do not
import torch or transformers. The model-card writer and the diffusers converters need no import either: a model
imports them the first time it saves or converts (`hf_vq.modeling.modeling_utils.registered`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and readers
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

# Where each public name lives: `hf_vq.losses` for the two loss names, `hf_vq.modeling` for the rest.
_LOSSES = {"VQGANLoss", "VQGANLossConfig"}
# Subpackages and modules reachable as attributes (`hf_vq.hub`) without importing them first, as before.
_SUBMODULES = {
    "cli",
    "commands",
    "data",
    "evaluation",
    "hub",
    "integrations",
    "loading",
    "losses",
    "modeling",
    "parsing",
    "pipelines",
    "training",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{'losses' if name in _LOSSES else 'modeling'}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
