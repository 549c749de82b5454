"""VQ-VAE tokenizer (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937)."""

from __future__ import annotations

from torch import nn

# diffusers records a pipeline component from a library it does not know by its module and, when loading, picks the
# load method by finding a known base class *in that module*: PreTrainedModel (see modeling_vqgan.py).
from transformers import PreTrainedModel  # noqa: F401

from .configuration_vqvae import VQVAEConfig
from .layers import VQVAEDecoder, VQVAEEncoder
from .modeling_utils import SingleGridMixin, VQPreTrainedModel
from .quantizers import build_quantizer


class VQVAEModel(SingleGridMixin, VQPreTrainedModel):
    r"""
    The VQ-VAE of "Neural Discrete Representation Learning": strided convolutions and residual stacks, no
    normalisation, a quantizer, and a transposed-convolution decoder.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq import VQVAEConfig, VQVAEModel
    >>> model = VQVAEModel(VQVAEConfig(hidden_channels=16, residual_hidden_channels=8, latent_channels=4,
    ...                                num_vq_embeddings=32)).eval()
    >>> model(torch.rand(2, 3, 32, 32) * 2 - 1).indices.shape
    torch.Size([2, 8, 8])

    ```
    """

    config_class = VQVAEConfig
    model_card_name = "VQ-VAE"
    model_card_tag = "vq-vae"
    model_card_description = (
        "strided-convolution autoencoder with residual stacks (van den Oord et al. 2017, arXiv:1711.00937)"
    )

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        stack = dict(
            hidden_channels=config.hidden_channels,
            residual_hidden_channels=config.residual_hidden_channels,
            num_residual_layers=config.num_residual_layers,
        )
        self.encoder = VQVAEEncoder(
            in_channels=config.in_channels,
            out_channels=config.latent_channels,
            num_downsample_layers=config.num_downsample_layers,
            **stack,
        )
        self.quant_conv = nn.Conv2d(config.latent_channels, config.vq_embed_dim, kernel_size=1)
        self.quantize = build_quantizer(**config.quantizer_kwargs())
        self.post_quant_conv = nn.Conv2d(config.vq_embed_dim, config.latent_channels, kernel_size=1)
        self.decoder = VQVAEDecoder(
            in_channels=config.latent_channels,
            out_channels=config.out_channels,
            num_upsample_layers=config.num_downsample_layers,
            **stack,
        )
        self.post_init()


__all__ = ["VQVAEModel"]
