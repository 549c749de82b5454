"""VQ-GAN tokenizer (Esser et al. 2021, https://arxiv.org/abs/2012.09841), with taming's and LDM's architecture."""

from __future__ import annotations

import os

from torch import nn

# diffusers records a pipeline component from a library it does not know by its module
# ("hf_vq.modeling.modeling_vqgan") and, when loading, picks the load method by finding a known base class *in that
# module*: PreTrainedModel.
from transformers import PreTrainedModel  # noqa: F401

from .configuration_vqgan import VQGANConfig
from .layers import Decoder, Encoder
from .modeling_utils import SingleGridMixin, VQPreTrainedModel, integration
from .quantizers import build_quantizer


class VQGANModel(SingleGridMixin, VQPreTrainedModel):
    r"""
    The taming-transformers / latent-diffusion VQ autoencoder: a ResNet encoder with self-attention, a quantizer,
    and a mirrored decoder. Submodules carry diffusers' `VQModel` names, so the weights map one to one.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq import VQGANConfig, VQGANModel
    >>> model = VQGANModel(VQGANConfig(block_out_channels=[8, 16], layers_per_block=1, latent_channels=4,
    ...                                num_vq_embeddings=16, norm_num_groups=4, sample_size=32)).eval()
    >>> tokens = model.encode_to_indices(torch.rand(1, 3, 32, 32) * 2 - 1)
    >>> tokens.shape
    torch.Size([1, 16, 16])
    >>> model.decode_indices(tokens).shape
    torch.Size([1, 3, 32, 32])

    ```
    """

    config_class = VQGANConfig
    model_card_name = "VQ-GAN"
    model_card_tag = "vq-gan"
    model_card_description = (
        "taming-transformers / latent-diffusion convolutional autoencoder (Esser et al. 2021, arXiv:2012.09841)"
    )

    def __init__(self, config: VQGANConfig):
        super().__init__(config)
        if config.norm_type == "spatial" and config.vq_embed_dim != config.latent_channels:
            raise ValueError(
                f"`norm_type='spatial'` conditions the decoder's norms on the codes, so `vq_embed_dim` must equal "
                f"`latent_channels`; got {config.vq_embed_dim} and {config.latent_channels}. Set them equal."
            )
        blocks = dict(
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            act_fn=config.act_fn,
            dropout=config.dropout,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        self.encoder = Encoder(
            in_channels=config.in_channels,
            out_channels=config.latent_channels,
            down_block_types=config.down_block_types,
            **blocks,
        )
        self.quant_conv = nn.Conv2d(config.latent_channels, config.vq_embed_dim, kernel_size=1)
        self.quantize = build_quantizer(**config.quantizer_kwargs())
        self.post_quant_conv = nn.Conv2d(config.vq_embed_dim, config.latent_channels, kernel_size=1)
        self.decoder = Decoder(
            in_channels=config.latent_channels,
            out_channels=config.out_channels,
            up_block_types=config.up_block_types,
            zq_channels=config.latent_channels if config.norm_type == "spatial" else None,
            **blocks,
        )
        self.post_init()

    def to_diffusers(self, save_directory: str | os.PathLike | None = None):
        """A stock `diffusers.VQModel` with this model's weights, computing the same images (needs hf_vq installed).

        Args:
            save_directory (`str` or `os.PathLike`, *optional*): also save the `VQModel` there.

        Raises:
            `ValueError` naming the options `VQModel` cannot express (FSQ, LFQ, residual VQ, l2 or low-dim codes...).
        """
        return integration("to_diffusers", "`to_diffusers`")(self, save_directory)

    @classmethod
    def from_diffusers(cls, model_or_path, subfolder: str | None = None, **config_overrides) -> VQGANModel:
        """Imports a `diffusers.VQModel` (instance, folder or Hub id): LDM VQ first stages, aMUSEd's VQ, MoVQ.

        Args:
            model_or_path (`diffusers.VQModel`, `str` or `os.PathLike`): the model or where to load it from.
            subfolder (`str`, *optional*): component folder inside a pipeline repository (`"vqvae"`, `"movq"`).
            config_overrides: [`VQGANConfig`] fields set on top of the translated config, e.g. `pixel_range=(0, 1)`.
        """
        return integration("from_diffusers", "`from_diffusers`")(
            cls, model_or_path, subfolder=subfolder, **config_overrides
        )


__all__ = ["VQGANModel"]
