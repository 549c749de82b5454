"""What every hf-vq tokenizer shares, and the single-grid surface VQ-GAN and VQ-VAE add to it.

- [`VQPreTrainedModel`]: the thin base of every tokenizer, whatever its levels: weight init that covers every
  parameter and buffer, pixel-value checks, the token-id checks read from `token_layout`, a model card on every
  `save_pretrained` and `push_to_hub` through the Hub hooks, and what a model card says about the architecture.
- [`SingleGridMixin`]: a tokenizer built from `encoder`, `quant_conv`, `quantize`, `post_quant_conv` and `decoder`
  (diffusers' `VQModel` names) with one token grid: `encode` / `quantize` / `decode` with diffusers' semantics,
  tiling (from `tiling.TilingMixin`), the token API (`encode_to_indices` / `decode_indices`) and `forward` with
  named losses and statistics.

This folder ships as remote code and imports nothing else of hf-vq. Its one way out is a hook: the parts of hf-vq
that serve the models register their functions with [`register_integrations`] when imported (`hf_vq.hub` the card
writer and uploader, `hf_vq.integrations.diffusers` the diffusers converters). A hook still empty when first used
imports its module by name (a soft import, not an import statement: this folder stays self-contained), so
`from hf_vq.modeling import VQGANModel` saves with a card although nothing imported `hf_vq.hub`. Without hf-vq (a
model loaded as remote code where hf-vq is not installed) models save without a card, push with transformers' own
`push_to_hub`, and the diffusers converters say that they need hf-vq.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .configuration_utils import BaseVQConfig
from .loading_utils import corrupt_weights_error, read_card_info
from .modeling_outputs import VQDecoderOutput, VQEncoderOutput, VQModelOutput
from .quantizer_base import BaseQuantizer
from .saving_utils import follow_umask
from .tiling import TilingMixin
from .token_layout import Indices, TokenLayout, TokenLevel

logger = logging.getLogger(__name__)

# name -> function, filled by `register_integrations`:
#   write_model_card(model, folder)              every save_pretrained (hf_vq.hub)
#   push_model_to_hub(model, repo_id, **kwargs)  push_to_hub (hf_vq.hub)
#   to_diffusers(model, save_directory)          VQGANModel.to_diffusers (hf_vq.integrations.diffusers)
#   from_diffusers(cls, model_or_path, ...)      VQGANModel.from_diffusers (hf_vq.integrations.diffusers)
INTEGRATIONS: dict[str, Callable[..., Any] | None] = dict.fromkeys(
    ("write_model_card", "push_model_to_hub", "to_diffusers", "from_diffusers")
)


# Where each hook's function comes from, imported on first use (see the module docstring).
_PROVIDERS = {
    "write_model_card": "hf_vq.hub",
    "push_model_to_hub": "hf_vq.hub",
    "to_diffusers": "hf_vq.integrations.diffusers",
    "from_diffusers": "hf_vq.integrations.diffusers",
}


def registered(name: str) -> Callable[..., Any] | None:
    """The function installed for the hook `name`, importing the hf-vq module that provides it if none is yet;
    `None` where hf-vq cannot provide it (this folder loaded as remote code, or hf-vq not importable)."""
    if INTEGRATIONS[name] is None and __name__ == "hf_vq.modeling.modeling_utils":
        try:
            importlib.import_module(_PROVIDERS[name])
        except ImportError as error:  # e.g. an optional dependency of the provider is missing
            logger.debug("No %s hook: %s could not be imported (%s)", name, _PROVIDERS[name], error)
    return INTEGRATIONS[name]


def register_integrations(**functions: Callable[..., Any] | None) -> None:
    """Installs functions the models call into the rest of hf-vq (see `INTEGRATIONS`); `None` uninstalls one."""
    unknown = sorted(set(functions) - set(INTEGRATIONS))
    if unknown:
        raise ValueError(f"Unknown integrations {unknown}; expected some of {sorted(INTEGRATIONS)}.")
    INTEGRATIONS.update(functions)


def integration(name: str, purpose: str) -> Callable[..., Any]:
    """The registered function `name`, or an `ImportError` saying that `purpose` needs hf-vq installed."""
    function = registered(name)
    if function is None:
        raise ImportError(f"{purpose} needs hf-vq installed (`pip install -e .` in its repository) and imported.")
    return function


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


def count_parameters(*modules: nn.Module) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


class VQPreTrainedModel(PreTrainedModel):
    """Base class of the hf-vq tokenizers. A subclass builds its modules in `__init__`, calls `self.post_init()`,
    and implements `token_layout`, `encode_to_indices`, `decode_indices` and `forward`.

    Model-card description: `model_card_name`, `model_card_tag`, `model_card_description` and
    `architecture_rows()`, which the Hub's card renderer reads instead of knowing every model type.
    """

    config_class = BaseVQConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ("ResnetBlock", "AttentionBlock", "VQVAEResidualBlock")

    model_card_name: str = "VQ tokenizer"
    model_card_tag: str | None = None
    model_card_description: str = ""

    # Set by training / evaluation (see `hf_vq.hub`): what the model card reports beyond the architecture.
    card_info: dict | None = None

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
        """Ratio between the image side and the finest token grid's side. What an image side must be divisible by
        is `image_multiple`."""
        return self.config.downsampling_factor

    @property
    def image_multiple(self) -> int:
        """What image height and width must be divisible by (`token_layout.image_multiple`)."""
        return self.token_layout.image_multiple

    @property
    def token_layout(self) -> TokenLayout:
        """Levels, grid shapes and vocabulary sizes of this model's token ids."""
        raise NotImplementedError

    def encode_to_indices(self, pixel_values: torch.Tensor) -> Indices:
        raise NotImplementedError

    def decode_indices(self, indices: Indices) -> torch.FloatTensor:
        raise NotImplementedError

    def pixel_loss(self, reconstruction: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """Mean `config.reconstruction_loss_type` ("mse" or "l1") between reconstruction and input, in fp32."""
        if self.config.reconstruction_loss_type == "l1":
            return F.l1_loss(reconstruction.float(), pixel_values.float())
        return F.mse_loss(reconstruction.float(), pixel_values.float())

    def get_last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last layer: where the VQ-GAN adaptive weight compares gradient norms."""
        return self.decoder.conv_out.weight

    # ----------------------------------------------------------------------------------------- input checks

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor):
            kind = type(pixel_values).__name__
            raise TypeError(f"`pixel_values` must be a torch.Tensor of shape (B, C, H, W); got {kind}.")
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
        self.token_layout.check_image_size(height, width)
        if torch.compiler.is_compiling() or not pixel_values.numel():  # graphs stay whole without a host sync
            return
        low, high = (float(v) for v in torch.aminmax(pixel_values.detach()))  # one host sync; NaN and inf propagate
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("`pixel_values` contains NaN or infinite values; clean or drop those images first.")
        range_low, range_high = (float(v) for v in self.config.pixel_range)
        span = range_high - range_low  # far outside (e.g. [0, 255] for [-1, 1]): it still runs, so say it once
        if (low < range_low - span or high > range_high + span) and not getattr(self, "_warned_pixel_range", False):
            self._warned_pixel_range = True
            logger.warning(
                "`pixel_values` span [%g, %g], far outside this model's pixel range [%g, %g] (config.pixel_range). "
                "Were [0, 255] images passed? Scale them first (to [-1, 1]: `images / 127.5 - 1`; to [0, 1]: "
                "`images / 255`). Said once per model.",
                low,
                high,
                range_low,
                range_high,
            )

    def _check_indices(self, indices: Indices) -> tuple[torch.Tensor, ...]:
        """Validates token ids against `token_layout`; returns them as one tensor per level."""
        return self.token_layout.check(indices)

    def _collect_stages(self, output_hidden_states: bool | None) -> list[torch.Tensor] | None:
        """A list for the encoders' and decoders' `stages` when hidden states are asked for (else `config`'s)."""
        wanted = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        return [] if wanted else None

    # ----------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, plus two things:

        - the model card's inputs (`card_info.json`: training recipe, evaluation results) saved next to the
          weights become `model.card_info`, so that `save_pretrained` of the loaded model keeps them;
        - a weights file that safetensors cannot read (cut short by an interrupted download, copy or save) raises
          an `OSError` naming the file, instead of safetensors' bare "incomplete metadata".

        `pretrained_model_name_or_path=None` with `config=` and `state_dict=` (transformers' own way of building a
        model from weights in memory) works as in transformers: there is no folder, so no card inputs.
        """
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:
            raise corrupt_weights_error(pretrained_model_name_or_path, kwargs, error) from None
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        found = read_card_info(pretrained_model_name_or_path, kwargs)
        if found is not None:
            model.card_info, model._card_source_dir = found  # the folder also holds the card's sample grid
        return loaded

    # ----------------------------------------------------------------------------------------- model card

    def architecture_rows(self) -> list[tuple[str, str]]:
        """(label, text) rows of the model card's architecture table."""
        config = self.config
        rows = [("Model", f"{self.model_card_name}: {self.model_card_description}")]
        rows += token_level_rows(self.token_layout, config.sample_size)
        rows += [
            ("Codebook", config.codebook_description()),
            ("Quantizer", config.quantizer_description()),
            ("Latent channels", str(config.latent_channels)),
            ("Encoder / decoder", config.architecture_description()),
        ]
        # Children by role: quantizers; the encoding path (encoders and the 1x1 convs into code space); the rest.
        groups = {"encoder": 0, "quantizer": 0, "decoder": 0}
        for name, child in self.named_children():
            if isinstance(child, BaseQuantizer):
                role = "quantizer"
            elif "encoder" in name or (name.endswith("quant_conv") and not name.startswith("post")):
                role = "encoder"
            else:
                role = "decoder"
            groups[role] += count_parameters(child)
        encoder, quantizer, decoder = groups["encoder"], groups["quantizer"], groups["decoder"]
        rows += [
            (
                "Parameters",
                f"{_count(encoder + decoder + quantizer)} (encoder {_count(encoder)}, quantizer {_count(quantizer)}, "
                f"decoder {_count(decoder)})",
            ),
            ("Pixel range", f"[{config.pixel_range[0]:g}, {config.pixel_range[1]:g}], {config.in_channels} channels"),
        ]
        return rows

    # ----------------------------------------------------------------------------------------- saving

    def save_pretrained(self, save_directory: str | os.PathLike, *args, write_model_card: bool = True, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus a `README.md` model card (see `hf_vq.hub.write_model_card`).

        Args:
            write_model_card (`bool`, *optional*, defaults to `True`):
                Render the card into the folder. An existing README.md is replaced.
        """
        super().save_pretrained(save_directory, *args, **kwargs)
        follow_umask(save_directory)  # safetensors writes its files 0600 (saving_utils.py)
        writer = registered("write_model_card")
        if write_model_card and writer is not None and kwargs.get("is_main_process", True):
            writer(self, save_directory)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Uploads weights, config and the model card (its snippets naming `repo_id`) in one commit.

        `remote_code=True` also ships the modeling files, so the model loads with transformers alone. See
        `hf_vq.hub.push_model_to_hub` for the other arguments.
        """
        push = registered("push_model_to_hub")
        if push is None:  # loaded as remote code without hf_vq: transformers' own upload
            return super().push_to_hub(repo_id, **kwargs)
        return push(self, repo_id, **kwargs)


class SingleGridMixin(TilingMixin):
    """The single-grid tokenizer: put it before [`VQPreTrainedModel`] in the bases. The subclass sets `encoder`,
    `quant_conv`, `quantize`, `post_quant_conv` and `decoder` in `__init__`. Tiling (`enable_tiling`,
    `tiled_encode`, ...) comes from [`tiling.TilingMixin`]."""

    encoder: nn.Module
    quant_conv: nn.Module
    quantize: BaseQuantizer
    post_quant_conv: nn.Module
    decoder: nn.Module

    # ----------------------------------------------------------------------------------------- diffusers surface

    @_runs_forward_hooks
    def encode(self, pixel_values: torch.Tensor, return_dict: bool = True) -> VQEncoderOutput | tuple:
        """Encodes images to pre-quantisation latents (plus their codes and token ids).

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
                Images in `config.pixel_range`; height and width divisible by `image_multiple`.
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

    def _decode_codes(self, codes: torch.Tensor, stages: list[torch.Tensor] | None = None) -> torch.Tensor:
        hidden_states = self.post_quant_conv(codes)
        # MoVQ's spatial norms are conditioned on the codes themselves.
        return self.decoder(hidden_states, codes if self.decoder.conditions_on_codes else None, stages=stages)

    # ----------------------------------------------------------------------------------------- token API

    @property
    def token_layout(self) -> TokenLayout:
        """One grid of ids; residual VQ stacks `num_quantizers` of them per position on a last axis (one too)."""
        quantize = self.quantize
        level = TokenLevel(
            "tokens",
            self.downsampling_factor,
            quantize.codebook_size,
            quantize.num_quantizers,
            stacked=quantize.stacks_stages,
        )
        return TokenLayout((level,))

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

    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool | None = None, output_hidden_states: bool | None = None
    ) -> VQModelOutput | tuple:
        """Encodes, quantizes and decodes `pixel_values`, returning the reconstruction, losses and code statistics.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, in_channels, height, width)`):
                Images in `config.pixel_range`.
            return_dict (`bool`, *optional*, defaults to `config.return_dict`, `True`):
                Return a [`VQModelOutput`] instead of its tuple (fields in declaration order, `None`s dropped).
            output_hidden_states (`bool`, *optional*, defaults to `config.output_hidden_states`, `False`):
                Also return every encoder and decoder stage's output as `hidden_states`.
        """
        self._check_pixel_values(pixel_values)
        stages = self._collect_stages(output_hidden_states)
        latents = self.quant_conv(self.encoder(pixel_values, stages=stages))
        quantized = self.quantize(latents, return_dict=True)
        reconstruction = self._decode_codes(quantized.quantized, stages=stages)
        reconstruction_loss = self.pixel_loss(reconstruction, pixel_values)
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
            hidden_states=None if stages is None else tuple(stages),
        )
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()


def token_level_rows(layout: TokenLayout, size: int) -> list[tuple[str, str]]:
    """Model-card rows of the levels' token shapes for `size`² images: `("Downsampling factor", "f16 (256² → 16²
    tokens)")` for a grid by factor, `("Token grid (scale_13)", "13² tokens at any image size")`, `("Token
    sequence", "32 tokens at any image size")`."""
    rows = []
    for level in layout.levels:
        shape = level.grid_shape(size, size)
        square = len(shape) == 2 and shape[0] == shape[1]
        tokens = f"{shape[0]}² tokens" if square else f"{'×'.join(map(str, shape))} tokens"
        if level.downsampling_factor is not None:
            label, text = "Downsampling factor", f"f{level.downsampling_factor} ({size}² → {tokens})"
        else:
            label, text = ("Token grid" if level.is_grid else "Token sequence"), f"{tokens} at any image size"
        rows.append((label + (f" ({level.name})" if layout.num_levels > 1 else ""), text))
    return rows


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


__all__ = [
    "INTEGRATIONS",
    "SingleGridMixin",
    "VQPreTrainedModel",
    "count_parameters",
    "integration",
    "register_integrations",
    "registered",
    "token_level_rows",
]
