"""`VQPreTrainedModel`: what every hf-vq tokenizer shares, whatever its encoder and decoder.

A subclass builds `encoder`, `quant_conv`, `quantize`, `post_quant_conv` and `decoder` (diffusers' `VQModel`
names) and gets: input checks, `encode` / `quantize` / `decode` with diffusers' semantics, the token API
(`encode_to_indices` / `decode_indices`), `forward` with named losses and code statistics, weight init that
covers every parameter and buffer, and a model card on every `save_pretrained`.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_utils import BaseVQConfig
from .quantizers import BaseQuantizer
from .tiling import tiled_decode_codes, tiled_encode

logger = logging.getLogger(__name__)


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
            Weighted entropy term of the quantizer (0 unless `config.entropy_loss_weight > 0`); part of `quantizer_loss`.
        running_usage (`torch.FloatTensor` of shape `()`):
            Fraction of the codebook used over the last `config.codebook_usage_window` training steps.
        dead_codes (`torch.LongTensor` of shape `()`):
            Codes unused for `config.codebook_usage_window` training steps or more.
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


def _runs_forward_hooks(method):
    """Runs accelerate's `pre_forward` hook (model CPU offload, device alignment) before a method other than
    `forward`: diffusers pipelines call `encode` / `decode` directly, as diffusers' own `apply_forward_hook` does."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        hook = getattr(self, "_hf_hook", None)  # set by accelerate.hooks.add_hook_to_module, absent otherwise
        if hook is not None and hasattr(hook, "pre_forward"):
            hook.pre_forward(self)
        return method(self, *args, **kwargs)

    return wrapper


class VQPreTrainedModel(PreTrainedModel):
    """Base class of the hf-vq tokenizers. Subclasses set `encoder`, `quant_conv`, `quantize`, `post_quant_conv`,
    `decoder` in `__init__` and call `self.post_init()`."""

    config_class = BaseVQConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ResnetBlock", "AttentionBlock", "VQVAEResidualBlock"]

    encoder: nn.Module
    quant_conv: nn.Module
    quantize: BaseQuantizer
    post_quant_conv: nn.Module
    decoder: nn.Module

    # Set by training / evaluation (see `hf_vq.hub`): what the model card reports beyond the architecture.
    card_info: dict | None = None
    # (tile side in pixels or None for config.sample_size, overlap fraction) once `enable_tiling` is called.
    _tiling: tuple[int | None, float] | None = None

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's own default init for convs and linears (what taming trains from), not the N(0, 0.02) that
        # transformers uses for text models; written with `transformers.initialization` so weights loaded by
        # `from_pretrained` are left alone.
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * module.weight[0][0].numel()
                if isinstance(module, nn.ConvTranspose2d):
                    fan_in = module.weight.shape[0] * module.weight[0][0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # Codebooks are the only embeddings here: taming's init, codes in a small box around the origin.
            bound = 1.0 / module.num_embeddings
            init.uniform_(module.weight, -bound, bound)
        elif isinstance(module, BaseQuantizer):
            # Only reached when the quantizer holds parameters or buffers of its own: transformers skips modules
            # without any (they are "initialised" by their children), so those children are handled above.
            module.reset_parameters()

    @property
    def downsampling_factor(self) -> int:
        """Ratio between the image side and the token grid side."""
        return self.config.downsampling_factor

    def get_last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last layer: where the VQ-GAN adaptive weight compares gradient norms."""
        return self.decoder.conv_out.weight

    # ----------------------------------------------------------------------------------------- input checks

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"`pixel_values` must be a torch.Tensor of shape (B, C, H, W); got {type(pixel_values).__name__}.")
        if not pixel_values.is_floating_point():
            raise TypeError(
                f"`pixel_values` must be a floating-point tensor in {tuple(self.config.pixel_range)}; got dtype "
                f"{pixel_values.dtype}. Convert with `pixel_values.float() / 127.5 - 1` for uint8 images in [0, 255]."
            )
        if pixel_values.dim() != 4:
            raise ValueError(
                f"`pixel_values` must have 4 dimensions (batch, channels, height, width); got shape "
                f"{tuple(pixel_values.shape)}. Add a batch dimension with `pixel_values.unsqueeze(0)`."
            )
        channels, height, width = pixel_values.shape[1:]
        if channels != self.config.in_channels:
            raise ValueError(
                f"`pixel_values` must have {self.config.in_channels} channels (config.in_channels); got {channels} "
                f"in shape {tuple(pixel_values.shape)}. Convert the images (e.g. to RGB) or use a model with "
                f"in_channels={channels}."
            )
        factor = self.downsampling_factor
        if height % factor or width % factor:
            nearest = tuple(max(factor, round(side / factor) * factor) for side in (height, width))
            raise ValueError(
                f"Image height and width must be divisible by the downsampling factor {factor}; got {height}x{width}. "
                f"Resize or crop to the nearest valid size, {nearest[0]}x{nearest[1]}."
            )
        # One host sync; skipped while compiling so graphs stay whole.
        if not torch.compiler.is_compiling() and not torch.isfinite(pixel_values).all():
            raise ValueError("`pixel_values` contains NaN or infinite values; clean or drop those images first.")

    def _check_indices(self, indices: torch.Tensor) -> None:
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.is_complex():
            received = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise TypeError(f"Token ids must be an integer tensor of shape (B, h, w); got {received}. Use `.long()`.")
        # residual_vq: one id per stage, (B, h, w, num_quantizers)
        depth = self.config.num_quantizers if self.config.quantizer_type == "residual_vq" else None
        layout = "batch, height, width" if depth is None else f"batch, height, width, {depth}"
        if indices.dim() != (3 if depth is None else 4) or (depth is not None and indices.shape[-1] != depth):
            raise ValueError(
                f"Token ids must have shape ({layout}); got {tuple(indices.shape)}. A flat sequence of "
                f"h*w positions reshapes with `indices.view({layout.replace('height', 'h').replace('width', 'w')})`."
            )
        size = self.quantize.codebook_size
        if indices.numel() and (indices.min() < 0 or indices.max() >= size):
            raise ValueError(
                f"Token ids must be in [0, {size}) for this codebook; got values in "
                f"[{int(indices.min())}, {int(indices.max())}]. Were they produced by a model with another codebook size?"
            )

    # ----------------------------------------------------------------------------------------- diffusers surface

    @_runs_forward_hooks
    def encode(self, pixel_values: torch.Tensor, return_dict: bool = True) -> VQEncoderOutput | tuple:
        """Encodes images to pre-quantisation latents (plus their codes and token ids).

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
                Images in `config.pixel_range`; height and width divisible by `downsampling_factor`.
        """
        if self._tiling_applies(pixel_values.shape[-2:] if isinstance(pixel_values, torch.Tensor) else ()):
            output = self.tiled_encode(pixel_values, *self._tiling)
            return output if return_dict else output.to_tuple()
        self._check_pixel_values(pixel_values)
        latents = self.quant_conv(self.encoder(pixel_values))
        quantized = self.quantize(latents, return_dict=True)
        output = VQEncoderOutput(latents=latents, quantized=quantized.quantized, indices=quantized.indices)
        return output if return_dict else output.to_tuple()

    @_runs_forward_hooks
    def decode(
        self,
        h: torch.Tensor,
        force_not_quantize: bool = False,
        return_dict: bool = True,
        shape: tuple[int, ...] | None = None,
    ) -> VQDecoderOutput | tuple:
        """Decodes latents to images, with diffusers' `VQModel.decode` semantics.

        Args:
            h (`torch.Tensor`):
                Pre-quantisation latents `(B, D, h, w)`, which are quantized first; or, with
                `force_not_quantize=True`, already-quantized latents, or token ids when `config.lookup_from_codebook`.
            force_not_quantize (`bool`, *optional*, defaults to `False`):
                Skip the quantizer.
            shape (`tuple`, *optional*):
                `(B, h, w, D)` layout of the token ids when `lookup_from_codebook` is set.
        """
        commit_loss = None
        if not force_not_quantize:
            quantized = self.quantize(h, return_dict=True)
            codes, commit_loss = quantized.quantized, quantized.loss
        elif self.config.lookup_from_codebook:
            codes = self.quantize.get_codebook_entry(h, shape)
        else:
            codes = h
        sample = self._decode_codes_maybe_tiled(codes)
        return VQDecoderOutput(sample=sample, commit_loss=commit_loss) if return_dict else (sample, commit_loss)

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        hidden_states = self.post_quant_conv(codes)
        # MoVQ's spatial norms are conditioned on the codes themselves.
        return self.decoder(hidden_states, codes if self.decoder.conditions_on_codes else None)

    # ----------------------------------------------------------------------------------------- tiling

    def enable_tiling(self, tile_sample_size: int | None = None, overlap: float = 0.25) -> None:
        """Encode / decode images larger than `tile_sample_size` (default `config.sample_size`) tile by tile, with
        overlaps of `overlap` of a tile blended linearly, so memory stays that of one tile."""
        self._tiling = (tile_sample_size, overlap)

    def disable_tiling(self) -> None:
        self._tiling = None

    def tiled_encode(self, pixel_values: torch.Tensor, tile_sample_size: int | None = None, overlap: float = 0.25):
        """`encode` tile by tile: latents are blended, then quantized once (see `hf_vq.modeling.tiling`)."""
        return tiled_encode(self, pixel_values, tile_sample_size, overlap)

    def tiled_decode(self, codes: torch.Tensor, tile_sample_size: int | None = None, overlap: float = 0.25):
        """Quantized latents `(B, D, h, w)` to images, tile by tile, blended in pixel space."""
        return tiled_decode_codes(self, codes, tile_sample_size, overlap)

    def _tiling_applies(self, spatial_shape, factor: int = 1) -> bool:
        if self._tiling is None or not spatial_shape:
            return False
        tile = self._tiling[0] or self.config.sample_size
        return max(spatial_shape) * factor > tile

    def _decode_codes_maybe_tiled(self, codes: torch.Tensor) -> torch.Tensor:
        if self._tiling_applies(codes.shape[-2:], factor=self.downsampling_factor):
            return self.tiled_decode(codes, *self._tiling)
        return self._decode_codes(codes)

    # ----------------------------------------------------------------------------------------- token API

    def encode_to_indices(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """Images `(B, C, H, W)` -> token ids `(B, H / f, W / f)` with f = `downsampling_factor`
        (`(B, H / f, W / f, num_quantizers)` for `quantizer_type="residual_vq"`, coarse to fine)."""
        return self.encode(pixel_values).indices

    @_runs_forward_hooks
    def decode_indices(self, indices: torch.LongTensor) -> torch.FloatTensor:
        """Token ids `(B, h, w)` (`(B, h, w, num_quantizers)` for residual_vq) -> images `(B, C, h * f, w * f)`."""
        self._check_indices(indices)
        return self._decode_codes_maybe_tiled(self.quantize.indices_to_codes(indices))

    # ----------------------------------------------------------------------------------------- forward

    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True) -> VQModelOutput | tuple:
        """Encodes, quantizes and decodes `pixel_values`, returning the reconstruction, losses and code statistics.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
                Images in `config.pixel_range`.
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`VQModelOutput`] instead of its tuple (fields in declaration order, `None`s dropped).
        """
        self._check_pixel_values(pixel_values)
        latents = self.quant_conv(self.encoder(pixel_values))
        quantized = self.quantize(latents, return_dict=True)
        reconstruction = self._decode_codes(quantized.quantized)
        if self.config.reconstruction_loss_type == "l1":
            reconstruction_loss = F.l1_loss(reconstruction.float(), pixel_values.float())
        else:
            reconstruction_loss = F.mse_loss(reconstruction.float(), pixel_values.float())
        output = VQModelOutput(
            reconstruction=reconstruction,
            loss=reconstruction_loss + quantized.loss,
            reconstruction_loss=reconstruction_loss,
            quantizer_loss=quantized.loss,
            codebook_loss=quantized.codebook_loss,
            commitment_loss=quantized.commitment_loss,
            latents=latents,
            quantized=quantized.quantized,
            indices=quantized.indices,
            perplexity=quantized.perplexity,
            codebook_usage=quantized.codebook_usage,
            entropy_loss=quantized.entropy_loss,
            running_usage=quantized.running_usage,
            dead_codes=quantized.dead_codes,
        )
        return output if return_dict else output.to_tuple()

    # ----------------------------------------------------------------------------------------- saving

    def save_pretrained(self, save_directory: str | os.PathLike, *args, write_model_card: bool = True, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus a `README.md` model card (see `hf_vq.hub.write_model_card`).

        Args:
            write_model_card (`bool`, *optional*, defaults to `True`):
                Render the card into the folder. An existing README.md is replaced.
        """
        super().save_pretrained(save_directory, *args, **kwargs)
        if write_model_card and kwargs.get("is_main_process", True):
            try:  # absolute, inside `try`: transformers' remote-code loader only accepts optional outside imports
                from hf_vq.hub import write_model_card as render_card
            except ImportError:
                # Loaded as remote code (`trust_remote_code=True`) without hf_vq installed: no card renderer here.
                return
            render_card(self, save_directory)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Uploads weights, config and the model card (its snippets naming `repo_id`) in one commit.

        `remote_code=True` also ships the modeling files, so the model loads with transformers alone. See
        `hf_vq.hub.push_model_to_hub` for the other arguments.
        """
        try:
            from hf_vq.hub import push_model_to_hub
        except ImportError:  # loaded as remote code without hf_vq: transformers' own upload
            return super().push_to_hub(repo_id, **kwargs)
        return push_model_to_hub(self, repo_id, **kwargs)
