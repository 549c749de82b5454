"""Configuration of the VQ-VAE tokenizer (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict

from .configuration_utils import BaseVQConfig, config_error


@strict(accept_kwargs=True)
class VQVAEConfig(BaseVQConfig):
    r"""
    Configuration of a [`VQVAEModel`], the architecture of "Neural Discrete Representation Learning": an
    encoder of strided 4×4 convolutions followed by residual stacks (ReLU, 3×3 conv, ReLU, 1×1 conv), and a
    decoder that mirrors it with transposed convolutions. The defaults are the paper's ImageNet model: two
    stride-2 layers (f4), 256 hidden units, two residual blocks, K = 512.

    Besides the fields below, every field of [`BaseVQConfig`] (quantizer, loss weights, `pixel_range`) applies.

    Args:
        hidden_channels (`int`, *optional*, defaults to 256):
            Width of the strided convolutions and of the residual stacks.
        residual_hidden_channels (`int`, *optional*, defaults to 256):
            Width inside each residual block (between its 3×3 and 1×1 convolutions).
        num_residual_layers (`int`, *optional*, defaults to 2):
            Residual blocks in the encoder's and in the decoder's stack.
        num_downsample_layers (`int`, *optional*, defaults to 2):
            Stride-2 4×4 convolutions; the downsampling factor is `2 ** num_downsample_layers`.
        latent_channels (`int`, *optional*, defaults to 64):
            Channels of the encoder output before `quant_conv`.
        num_vq_embeddings (`int`, *optional*, defaults to 512):
            Codebook size K.
        sample_size (`int`, *optional*, defaults to 128):
            Training image size (the paper's ImageNet crops are 128²).

    Example:

    ```python
    >>> from hf_vq import VQVAEConfig, VQVAEModel
    >>> config = VQVAEConfig(hidden_channels=32, residual_hidden_channels=16, latent_channels=8, num_vq_embeddings=64)
    >>> model = VQVAEModel(config)
    >>> model.downsampling_factor
    4

    ```
    """

    model_type = "hf_vq_vqvae"

    hidden_channels: int = 256
    residual_hidden_channels: int = 256
    num_residual_layers: int = 2
    num_downsample_layers: int = 2
    latent_channels: int = 64
    num_vq_embeddings: int = 512
    sample_size: int = 128

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("hidden_channels", "residual_hidden_channels", "num_downsample_layers", "sample_size"):
            if getattr(self, name) < 1:
                raise config_error(name, "a positive integer", getattr(self, name), f"Set `{name}` to at least 1.")
        if self.num_residual_layers < 0:
            raise config_error("num_residual_layers", "an integer >= 0", self.num_residual_layers, "Use e.g. 2.")

    @property
    def downsampling_factor(self) -> int:
        return 2**self.num_downsample_layers

    def architecture_description(self) -> str:
        return (
            f"{self.num_downsample_layers} stride-2 4×4 convs, {self.hidden_channels} channels, "
            f"{self.num_residual_layers} residual blocks ({self.residual_hidden_channels} hidden)"
        )
