"""VQ-VAE-2 (Razavi et al. 2019, https://arxiv.org/abs/1906.00446): a top token grid for global structure and a
bottom grid, conditioned on the top, for detail."""

from __future__ import annotations

import torch
from torch import nn

# diffusers records a pipeline component from a library it does not know by its module and, when loading, picks the
# load method by finding a known base class *in that module*: PreTrainedModel (see modeling_vqgan.py).
from transformers import PreTrainedModel  # noqa: F401

from .configuration_vqvae2 import VQVAE2Config
from .layers import VQVAEDecoder, VQVAEEncoder
from .modeling_outputs import QuantizerOutput, VQVAE2ModelOutput
from .modeling_utils import VQPreTrainedModel, _runs_forward_hooks
from .quantizers import build_quantizer
from .token_layout import TokenLayout, TokenLevel


class VQVAE2Model(VQPreTrainedModel):
    r"""
    The two-level VQ-VAE of "Generating Diverse High-Fidelity Images with VQ-VAE-2".

    `encoder` (stride `f`) turns the image into bottom features; `top_encoder` (a further stride) into top latents,
    quantized by `quantize_top`. `top_decoder` brings the top codes back to the bottom grid, where they are
    concatenated with the bottom features before `quantize_bottom`, so the bottom codes spend their bits on what the
    top did not say. The `decoder` reads the upsampled top codes ⊕ the bottom codes.

    Token ids are a tuple, coarse to fine: `(top (B, H / 2f, W / 2f), bottom (B, H / f, W / f))` for the default
    one extra top stride; `token_layout` describes them.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq import VQVAE2Config, VQVAE2Model
    >>> model = VQVAE2Model(VQVAE2Config(hidden_channels=16, residual_hidden_channels=8, latent_channels=8,
    ...                                  num_vq_embeddings=32, vq_embed_dim=4, top_num_vq_embeddings=16,
    ...                                  top_vq_embed_dim=4, sample_size=32)).eval()
    >>> ids = model.encode_to_indices(torch.rand(2, 3, 32, 32) * 2 - 1)
    >>> model.decode_indices(ids).shape
    torch.Size([2, 3, 32, 32])

    ```
    """

    config_class = VQVAE2Config
    model_card_name = "VQ-VAE-2"
    model_card_tag = "vq-vae-2"
    model_card_description = (
        "hierarchical VQ-VAE with a top and a bottom token grid (Razavi et al. 2019, arXiv:1906.00446)"
    )

    def __init__(self, config: VQVAE2Config):
        super().__init__(config)
        stack = dict(
            hidden_channels=config.hidden_channels,
            residual_hidden_channels=config.residual_hidden_channels,
            num_residual_layers=config.num_residual_layers,
        )
        top_dim, bottom_dim = config.top_vq_embed_dim, config.vq_embed_dim
        self.encoder = VQVAEEncoder(
            in_channels=config.in_channels,
            out_channels=config.latent_channels,
            num_downsample_layers=config.num_bottom_downsample_layers,
            **stack,
        )
        self.top_encoder = VQVAEEncoder(
            in_channels=config.latent_channels,
            out_channels=config.latent_channels,
            num_downsample_layers=config.num_top_downsample_layers,
            **stack,
        )
        self.top_quant_conv = nn.Conv2d(config.latent_channels, top_dim, kernel_size=1)
        self.quantize_top = build_quantizer(**config.quantizer_kwargs("top"))
        self.top_decoder = VQVAEDecoder(
            in_channels=top_dim, out_channels=top_dim, num_upsample_layers=config.num_top_downsample_layers, **stack
        )
        self.quant_conv = nn.Conv2d(config.latent_channels + top_dim, bottom_dim, kernel_size=1)
        self.quantize_bottom = build_quantizer(**config.quantizer_kwargs("bottom"))
        upsample = [
            nn.ConvTranspose2d(top_dim, top_dim, kernel_size=4, stride=2, padding=1)
            for _ in range(config.num_top_downsample_layers)
        ]
        self.upsample_top = nn.Sequential(*upsample)
        self.decoder = VQVAEDecoder(
            in_channels=top_dim + bottom_dim,
            out_channels=config.out_channels,
            num_upsample_layers=config.num_bottom_downsample_layers,
            **stack,
        )
        self.post_init()

    @property
    def token_layout(self) -> TokenLayout:
        """Two grids, coarse to fine; image sides must be divisible by the top grid's factor (`image_multiple`)."""
        return TokenLayout(
            (
                TokenLevel("top", self.config.top_downsampling_factor, self.quantize_top.codebook_size),
                TokenLevel("bottom", self.config.bottom_downsampling_factor, self.quantize_bottom.codebook_size),
            )
        )

    def _quantize(
        self, pixel_values: torch.Tensor, stages: list[torch.Tensor] | None = None
    ) -> tuple[QuantizerOutput, QuantizerOutput]:
        self._check_pixel_values(pixel_values)  # sides divisible by the top grid's factor, for both grids to be whole
        features = self.encoder(pixel_values, stages=stages)  # (B, C, H / f, W / f)
        top = self.quantize_top(self.top_quant_conv(self.top_encoder(features, stages=stages)), return_dict=True)
        # The bottom search sees what the top codes already say about this position.
        conditioned = torch.cat([self.top_decoder(top.quantized, stages=stages), features], dim=1)
        bottom = self.quantize_bottom(self.quant_conv(conditioned), return_dict=True)
        return top, bottom

    def _decode_codes(
        self, top_codes: torch.Tensor, bottom_codes: torch.Tensor, stages: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        return self.decoder(torch.cat([self.upsample_top(top_codes), bottom_codes], dim=1), stages=stages)

    # ----------------------------------------------------------------------------------------- token API

    @_runs_forward_hooks
    def encode_to_indices(self, pixel_values: torch.Tensor) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Images `(B, C, H, W)` -> `(top, bottom)` token ids, coarse to fine (see `token_layout`)."""
        top, bottom = self._quantize(pixel_values)
        return top.indices, bottom.indices

    @_runs_forward_hooks
    def decode_indices(self, indices: tuple[torch.LongTensor, torch.LongTensor]) -> torch.FloatTensor:
        """`(top, bottom)` token ids -> images `(B, C, H, W)`."""
        top, bottom = self._check_indices(indices)
        return self._decode_codes(
            self.quantize_top.indices_to_codes(top), self.quantize_bottom.indices_to_codes(bottom)
        )

    # ----------------------------------------------------------------------------------------- forward

    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool | None = None, output_hidden_states: bool | None = None
    ) -> VQVAE2ModelOutput | tuple:
        """Encodes both levels, decodes, and returns the reconstruction, the losses and per-level statistics.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
                Images in `config.pixel_range`, sides divisible by the top grid's factor.
            return_dict (`bool`, *optional*, defaults to `config.return_dict`, `True`):
                Return a [`VQVAE2ModelOutput`] instead of its tuple.
            output_hidden_states (`bool`, *optional*, defaults to `config.output_hidden_states`):
                Also return the stage outputs of the bottom encoder, the top encoder, the top decoder and the
                decoder, in that order, as `hidden_states`.
        """
        stages = self._collect_stages(output_hidden_states)
        top, bottom = self._quantize(pixel_values, stages=stages)
        reconstruction = self._decode_codes(top.quantized, bottom.quantized, stages=stages)
        reconstruction_loss = self.pixel_loss(reconstruction, pixel_values)
        output = VQVAE2ModelOutput(
            reconstruction=reconstruction,
            loss=reconstruction_loss + top.loss + bottom.loss,
            reconstruction_loss=reconstruction_loss,
            quantizer_loss=top.loss + bottom.loss,
            codebook_loss=top.codebook_loss + bottom.codebook_loss,
            commitment_loss=top.commitment_loss + bottom.commitment_loss,
            entropy_loss=top.entropy_loss + bottom.entropy_loss,
            indices=(top.indices, bottom.indices),
            perplexity=(top.perplexity + bottom.perplexity) / 2,
            codebook_usage=(top.codebook_usage + bottom.codebook_usage) / 2,
            running_usage=(top.running_usage + bottom.running_usage) / 2,
            dead_codes=top.dead_codes + bottom.dead_codes,
            top_perplexity=top.perplexity,
            bottom_perplexity=bottom.perplexity,
            top_codebook_usage=top.codebook_usage,
            bottom_codebook_usage=bottom.codebook_usage,
            hidden_states=None if stages is None else tuple(stages),
        )
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()

    def to_diffusers(self, save_directory=None):
        """Not possible: diffusers' `VQModel` has one token grid. Raises a `ValueError` saying what to use."""
        raise ValueError(
            "VQ-VAE-2 has two token grids (top and bottom); diffusers' VQModel has one, so it cannot be exported. "
            "Use the model directly (`encode_to_indices` / `decode_indices`), or a single-grid VQ-GAN / VQ-VAE "
            "for diffusers pipelines."
        )


__all__ = ["VQVAE2Model"]
