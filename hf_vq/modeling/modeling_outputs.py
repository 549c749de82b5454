"""The outputs of hf-vq models and quantizers: `ModelOutput` dataclasses whose fields are all optional tensors,
with documented shapes. A model's output type never depends on its flags."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class QuantizerOutput(ModelOutput):
    r"""
    Args:
        quantized (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)`):
            The codes, with the gradient estimator of the quantizer attached (straight-through by default).
        indices (`torch.LongTensor` of shape `(batch_size, height, width)`):
            Token ids in `[0, codebook_size)`.
        loss (`torch.FloatTensor` of shape `()`):
            Sum of the quantizer's weighted loss terms.
        codebook_loss (`torch.FloatTensor` of shape `()`):
            Weighted codebook term `‖sg[z] − e‖²` (trains the codebook only).
        commitment_loss (`torch.FloatTensor` of shape `()`):
            Weighted commitment term `β‖z − sg[e]‖²` (trains the encoder only).
        perplexity (`torch.FloatTensor` of shape `()`):
            `exp(entropy)` of the batch's code histogram: the effective number of codes in use.
        codebook_usage (`torch.FloatTensor` of shape `()`):
            Fraction of the codebook used at least once in the batch.
        entropy_loss (`torch.FloatTensor` of shape `()`):
            Weighted entropy term (0 unless `entropy_loss_weight > 0`); included in `loss`.
        running_usage (`torch.FloatTensor` of shape `()`):
            Fraction of the codebook used during the last `codebook_usage_window` training steps (all processes).
        dead_codes (`torch.LongTensor` of shape `()`):
            Number of codes unused for `codebook_usage_window` training steps or more.
    """

    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_usage: torch.FloatTensor | None = None
    entropy_loss: torch.FloatTensor | None = None
    running_usage: torch.FloatTensor | None = None
    dead_codes: torch.LongTensor | None = None


@dataclass
class VQEncoderOutput(ModelOutput):
    r"""
    Args:
        latents (`torch.FloatTensor` of shape `(batch_size, vq_embed_dim, height, width)`):
            Pre-quantisation latents (after `quant_conv`), as diffusers' `VQModel.encode(x).latents`.
        quantized (`torch.FloatTensor` of shape `(batch_size, vq_embed_dim, height, width)`):
            The latents replaced by their codes.
        indices (`torch.LongTensor` of shape `(batch_size, height, width)`):
            Token ids.
    """

    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None


@dataclass
class VQDecoderOutput(ModelOutput):
    r"""
    Args:
        sample (`torch.FloatTensor` of shape `(batch_size, out_channels, height, width)`):
            Decoded images in `config.pixel_range`.
        commit_loss (`torch.FloatTensor` of shape `()`, *optional*):
            The quantizer's loss when `decode` quantized its input (diffusers' field name).
    """

    sample: torch.FloatTensor | None = None
    commit_loss: torch.FloatTensor | None = None


@dataclass
class VQModelOutput(ModelOutput):
    r"""
    Args:
        reconstruction (`torch.FloatTensor` of shape `(batch_size, out_channels, height, width)`):
            The decoded images.
        loss (`torch.FloatTensor` of shape `()`):
            The VQ-VAE objective: `reconstruction_loss + quantizer_loss`.
        reconstruction_loss (`torch.FloatTensor` of shape `()`):
            Mean pixel loss (`config.reconstruction_loss_type`) between input and reconstruction.
        quantizer_loss (`torch.FloatTensor` of shape `()`):
            Sum of the quantizer's weighted terms.
        codebook_loss (`torch.FloatTensor` of shape `()`):
            Weighted codebook term `‖sg[z] − e‖²`.
        commitment_loss (`torch.FloatTensor` of shape `()`):
            Weighted commitment term `β‖z − sg[e]‖²`.
        latents (`torch.FloatTensor` of shape `(batch_size, vq_embed_dim, height, width)`):
            Pre-quantisation latents.
        quantized (`torch.FloatTensor` of shape `(batch_size, vq_embed_dim, height, width)`):
            Quantized latents (with the quantizer's gradient estimator).
        indices (`torch.LongTensor` of shape `(batch_size, height, width)`):
            Token ids.
        perplexity (`torch.FloatTensor` of shape `()`):
            Effective number of codes used in the batch.
        codebook_usage (`torch.FloatTensor` of shape `()`):
            Fraction of the codebook used in the batch.
        entropy_loss (`torch.FloatTensor` of shape `()`):
            Weighted entropy term of the quantizer (0 unless `config.entropy_loss_weight > 0`); part of
            `quantizer_loss`.
        running_usage (`torch.FloatTensor` of shape `()`):
            Fraction of the codebook used over the last `config.codebook_usage_window` training steps.
        dead_codes (`torch.LongTensor` of shape `()`):
            Codes unused for `config.codebook_usage_window` training steps or more.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Returned when `output_hidden_states=True` is passed or `config.output_hidden_states=True`: the output of
            every encoder stage, then of every decoder stage, each `(batch_size, channels, height, width)` (see
            `hidden_states` of the model's encoder and decoder `forward`). `None` otherwise.
    """

    reconstruction: torch.FloatTensor | None = None
    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_usage: torch.FloatTensor | None = None
    entropy_loss: torch.FloatTensor | None = None
    running_usage: torch.FloatTensor | None = None
    dead_codes: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class VQVAE2ModelOutput(ModelOutput):
    r"""
    Args:
        reconstruction (`torch.FloatTensor` of shape `(batch_size, out_channels, height, width)`):
            The decoded images.
        loss (`torch.FloatTensor` of shape `()`):
            `reconstruction_loss + quantizer_loss`.
        reconstruction_loss (`torch.FloatTensor` of shape `()`):
            Mean pixel loss (`config.reconstruction_loss_type`) between input and reconstruction.
        quantizer_loss (`torch.FloatTensor` of shape `()`):
            Sum over both levels of the quantizers' weighted terms.
        codebook_loss (`torch.FloatTensor` of shape `()`):
            Sum over both levels of the weighted codebook terms `‖sg[z] − e‖²`.
        commitment_loss (`torch.FloatTensor` of shape `()`):
            Sum over both levels of the weighted commitment terms `β‖z − sg[e]‖²`.
        entropy_loss (`torch.FloatTensor` of shape `()`):
            Sum over both levels of the weighted entropy terms.
        indices (`tuple(torch.LongTensor)`):
            Token ids, coarse to fine: top `(batch_size, H / f_top, W / f_top)`, bottom `(batch_size, H / f, W / f)`.
        perplexity (`torch.FloatTensor` of shape `()`):
            Mean over the levels of the batch's code perplexity.
        codebook_usage (`torch.FloatTensor` of shape `()`):
            Mean over the levels of the fraction of the codebook used in the batch.
        running_usage (`torch.FloatTensor` of shape `()`):
            Mean over the levels of the fraction of codes used within the usage window.
        dead_codes (`torch.LongTensor` of shape `()`):
            Dead codes of both levels together.
        top_perplexity, bottom_perplexity (`torch.FloatTensor` of shape `()`):
            Each level's batch perplexity.
        top_codebook_usage, bottom_codebook_usage (`torch.FloatTensor` of shape `()`):
            Each level's fraction of the codebook used in the batch.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Returned when `output_hidden_states=True` is passed or `config.output_hidden_states=True`: the output of
            every stage of the encoders and decoders, in the order the forward pass computes them. `None` otherwise.
    """

    reconstruction: torch.FloatTensor | None = None
    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    entropy_loss: torch.FloatTensor | None = None
    indices: tuple[torch.LongTensor, ...] | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_usage: torch.FloatTensor | None = None
    running_usage: torch.FloatTensor | None = None
    dead_codes: torch.LongTensor | None = None
    top_perplexity: torch.FloatTensor | None = None
    bottom_perplexity: torch.FloatTensor | None = None
    top_codebook_usage: torch.FloatTensor | None = None
    bottom_codebook_usage: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


__all__ = ["QuantizerOutput", "VQDecoderOutput", "VQEncoderOutput", "VQModelOutput", "VQVAE2ModelOutput"]
