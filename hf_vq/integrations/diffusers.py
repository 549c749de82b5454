"""diffusers interop: export a [`VQGANModel`] as a stock `diffusers.VQModel`, import one back, and pipeline helpers.

Our VQ-GAN already *is* a drop-in VQ component: it exposes `VQModel`'s interface (`encode(x).latents`,
`decode(h, force_not_quantize, shape)`, `quantize(h)[2][2]`, `quantize.get_codebook_entry`, `config.scaling_factor`
/ `force_upcast` / `lookup_from_codebook` / `block_out_channels`), so it can be passed to `LDMPipeline`,
`VQDiffusionPipeline`, `AmusedPipeline`, `KandinskyV22Pipeline` (`movq=`) as is. A pipeline holding it saves and
loads with `DiffusionPipeline.save_pretrained` / `from_pretrained`: `model_index.json` records the component as
`["hf_vq", "VQGANModel"]`, which diffusers resolves by importing `hf_vq` (install it; importing it first also
registers our configs with transformers' Auto classes).

The module names of [`VQGANModel`] equal `VQModel`'s, so export and import are a config translation plus a
one-to-one state-dict copy. Options `VQModel` has no way to express (FSQ / LFQ / residual quantizers, activations
other than SiLU, ...) raise a `ValueError` that names them.

Low-dimensional and l2-normalised codes (`codebook_dim`, `codebook_l2_norm`, the main job's model) export exactly,
with other weights: `project_in` / `project_out` are linear, so they fold into the 1x1 `quant_conv` /
`post_quant_conv`, and the exported codebook is the normalised one. The search then agrees: for unit-norm codes
`‖z − e‖² = ‖z‖² + 1 − 2 z·e`, so diffusers' plain L2 nearest code is the code of largest `z·e`, which is the
cosine-nearest code hf-vq picks after normalising `z` (a positive scale per row changes no argmax). The exported
model's latents (`encode(x).latents`) are the code-space ones, `project_in(quant_conv(h))`, unnormalised.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any

import torch

from ..modeling.configuration_utils import BaseVQConfig
from ..modeling.configuration_vqgan import VQGANConfig
from ..modeling.modeling_utils import SingleGridMixin, register_integrations

logger = logging.getLogger(__name__)

# VQGANConfig field -> VQModel argument of the same meaning (the names are the same by design).
DIFFUSERS_FIELDS = (
    "in_channels",
    "out_channels",
    "down_block_types",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "act_fn",
    "latent_channels",
    "sample_size",
    "num_vq_embeddings",
    "norm_num_groups",
    "vq_embed_dim",
    "scaling_factor",
    "norm_type",
    "mid_block_add_attention",
    "lookup_from_codebook",
    "force_upcast",
)

# Fields that change training only (losses, codebook updates, statistics, init) or the meaning of pixel values:
# the network a `VQModel` runs at inference is the same whatever their value.
TRAINING_ONLY_FIELDS = frozenset(
    {
        "pixel_range",
        "commitment_cost",
        "codebook_loss_weight",
        "beta_placement",
        "quantizer_chunk_size",
        "reconstruction_loss_type",
        "initializer_range",
        "dropout",
        "codebook_update",
        "ema_decay",
        "ema_epsilon",
        "kmeans_init",
        "kmeans_iters",
        "codebook_usage_window",
        "dead_code_restart",
        "entropy_loss_weight",
        "entropy_temperature",
        "gradient_estimator",
        "fsq_levels",  # only read by quantizer_type="fsq", which is refused on its own
    }
)

# Fields the export folds into the weights (see the module docstring), and the type the quantizer is checked for.
ABSORBED_FIELDS = frozenset({"quantizer_type", "codebook_dim", "codebook_l2_norm"})

# diffusers' `VectorQuantizer(beta=0.25, legacy=True)`: β = 0.25 on the codebook term, hard-coded in `VQModel`.
DIFFUSERS_QUANTIZER_LOSS = {"commitment_cost": 0.25, "codebook_loss_weight": 1.0, "beta_placement": "codebook"}


def _require_diffusers():
    try:
        import diffusers
    except ImportError as error:  # pragma: no cover - diffusers is an extra
        raise ImportError(
            "Exporting to / importing from diffusers needs diffusers: `pip install 'hf-vq[diffusers]'`."
        ) from error
    return diffusers


def _declared_fields(config: BaseVQConfig) -> dict[str, dataclasses.Field | None]:
    """The fields hf-vq's config classes declare (not the generic `PreTrainedConfig` ones), with their defaults."""
    names = [
        name
        for klass in type(config).__mro__
        if isinstance(klass, type) and issubclass(klass, BaseVQConfig)
        for name in vars(klass).get("__annotations__", {})
    ]
    fields = {f.name: f for f in dataclasses.fields(config)}
    return {name: fields.get(name) for name in dict.fromkeys(names)}


def _default(field: dataclasses.Field | None) -> Any:
    if field is None:
        return dataclasses.MISSING
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def inexpressible_options(config: BaseVQConfig) -> list[str]:
    """Every option of `config` that `diffusers.VQModel` cannot express, as `"name=value (why)"` strings."""
    problems = []
    if not isinstance(config, VQGANConfig):
        return [f"model_type={config.model_type!r} (diffusers' VQModel is the VQ-GAN architecture only)"]
    if config.quantizer_type != "vq":
        problems.append(f"quantizer_type={config.quantizer_type!r} (VQModel has a nearest-code VectorQuantizer only)")
    if config.act_fn not in ("silu", "swish"):
        problems.append(f"act_fn={config.act_fn!r} (VQModel's encoder and decoder end in a SiLU whatever act_fn)")
    if config.norm_type == "spatial" and config.norm_num_groups != 32:
        problems.append(
            f"norm_num_groups={config.norm_num_groups} with norm_type='spatial' "
            "(diffusers' SpatialNorm hard-codes 32 groups)"
        )
    if config.codebook_dim is not None and config.norm_type == "spatial":
        problems.append(
            f"codebook_dim={config.codebook_dim} with norm_type='spatial' (MoVQ's decoder norms read the codes, "
            "which the export moves into the low-dimensional code space)"
        )
    for name, field in _declared_fields(config).items():
        if name in DIFFUSERS_FIELDS or name in TRAINING_ONLY_FIELDS or name in ABSORBED_FIELDS:
            continue
        value, default = getattr(config, name), _default(field)  # a declared field: always present
        if name == "num_quantizers" and value == 1:
            continue
        if default is dataclasses.MISSING or value != default:
            problems.append(f"{name}={value!r} (no VQModel equivalent)")
    return problems


def diffusers_config_kwargs(config: VQGANConfig) -> dict[str, Any]:
    """`VQModel(**kwargs)` arguments equal to `config`; raises `ValueError` naming what VQModel cannot express."""
    problems = inexpressible_options(config)
    if problems:
        raise ValueError(
            "This model cannot be exported to diffusers.VQModel: " + "; ".join(problems) + ". Keep it as an hf-vq "
            "model: it runs in diffusers pipelines as is (pass it as the `vqvae` / `movq` component)."
        )
    kwargs = {name: getattr(config, name) for name in DIFFUSERS_FIELDS}
    kwargs["vq_embed_dim"] = config.codebook_dim or config.vq_embed_dim  # the search runs in the code space
    kwargs["act_fn"] = "silu"  # "swish" is the same function; VQModel knows both, silu is its spelling
    for name in ("down_block_types", "up_block_types", "block_out_channels"):
        kwargs[name] = tuple(kwargs[name])
    return kwargs


def to_diffusers(model, save_directory: str | os.PathLike | None = None):
    """A stock `diffusers.VQModel` computing what `model` computes (same weights, dtype, device and train/eval mode).

    Args:
        model ([`VQGANModel`]): the model to export.
        save_directory (`str` or `os.PathLike`, *optional*):
            If given, the `VQModel` is also saved there with `save_pretrained` (loadable with
            `diffusers.VQModel.from_pretrained`, no hf-vq needed).

    Raises:
        `ValueError`: naming the options diffusers cannot express (FSQ, LFQ, residual VQ, l2 codes, ...).
    """
    diffusers = _require_diffusers()
    config = model.config
    kwargs = diffusers_config_kwargs(config)
    # Where β sits changes gradients, not the loss value; the weights change the value diffusers reports.
    differs = {
        k: getattr(config, k)
        for k in ("commitment_cost", "codebook_loss_weight")
        if getattr(config, k) != DIFFUSERS_QUANTIZER_LOSS[k]
    }
    if differs:
        logger.warning(
            "diffusers' VQModel hard-codes its quantizer loss (beta=0.25, codebook weight 1); this model's %s only "
            "change training losses: the exported model computes the same images but reports another commit_loss.",
            differs,
        )
    # Build on the meta device: the weights are copied in right after.
    with torch.device("meta"):
        vq_model = diffusers.VQModel(**kwargs)
    expected = vq_model.state_dict().keys()
    state_dict = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected and not k.startswith("quantize.")]
    if missing or extra:  # the module names are kept equal to VQModel's; this catches a drift
        raise RuntimeError(
            f"State dict does not match diffusers.VQModel: missing {missing[:5]}, unexpected {extra[:5]}."
        )
    state_dict = {k: state_dict[k].clone() for k in expected}  # own copy, not shared
    state_dict.update(_absorbed_weights(model))
    parameter = next(model.parameters())
    vq_model.load_state_dict(state_dict, assign=True)
    vq_model.to(parameter.device)
    if parameter.dtype != torch.float32:  # diffusers warns on any dtype cast, so only cast when needed
        vq_model.to(parameter.dtype)
    vq_model.train(model.training)
    if save_directory is not None:
        vq_model.save_pretrained(save_directory)
    return vq_model


@torch.no_grad()
def _absorbed_weights(model) -> dict[str, torch.Tensor]:
    """`quant_conv`, `post_quant_conv` and the codebook with `project_in` / `project_out` folded in and the codes
    l2-normalised (empty when the model has neither option). Composed in float64, then cast back."""
    quantizer, config = model.quantize, model.config
    if config.codebook_dim is None and not config.codebook_l2_norm:
        return {}
    dtype = quantizer.embedding.weight.dtype
    codes = quantizer.codebook().double()  # (K, code_dim), normalised when l2_norm
    weights = {"quantize.embedding.weight": codes}
    if config.codebook_dim is not None:
        # 1x1 convs are linear maps over channels: (out, in, 1, 1) -> (out, in)
        w_in, b_in = quantizer.project_in.weight.double(), quantizer.project_in.bias.double()
        w_q, b_q = model.quant_conv.weight.double()[:, :, 0, 0], model.quant_conv.bias.double()
        w_out, b_out = quantizer.project_out.weight.double(), quantizer.project_out.bias.double()
        w_p, b_p = model.post_quant_conv.weight.double()[:, :, 0, 0], model.post_quant_conv.bias.double()
        weights.update(
            {
                "quant_conv.weight": (w_in @ w_q)[:, :, None, None],  # project_in(quant_conv(h))
                "quant_conv.bias": w_in @ b_q + b_in,
                "post_quant_conv.weight": (w_p @ w_out)[:, :, None, None],  # post_quant_conv(project_out(e))
                "post_quant_conv.bias": w_p @ b_out + b_p,
            }
        )
    return {name: value.to(dtype).contiguous() for name, value in weights.items()}


def config_from_diffusers(vq_config: Any, **overrides: Any) -> VQGANConfig:
    """A [`VQGANConfig`] equal to a `diffusers.VQModel` config (its `FrozenDict` or a plain dict)."""
    config = dict(vq_config)
    if config.get("norm_type", "group") == "spatial" and config.get("norm_num_groups", 32) != 32:
        raise ValueError(
            f"This VQModel uses norm_type='spatial' with norm_num_groups={config['norm_num_groups']}: diffusers' "
            "SpatialNorm then uses 32 groups and the other norms another count, which VQGANConfig cannot express."
        )
    if config.get("act_fn", "silu") not in ("silu", "swish"):
        raise ValueError(
            f"This VQModel has act_fn={config['act_fn']!r} in its ResNet blocks but SiLU in conv_act (diffusers "
            "hard-codes it); VQGANConfig applies one activation everywhere, so it cannot be imported exactly."
        )
    kwargs = {name: config[name] for name in DIFFUSERS_FIELDS if name in config}
    # diffusers' quantizer: beta = 0.25 on the codebook term (legacy=True); keep it so the losses are the same.
    kwargs.update(DIFFUSERS_QUANTIZER_LOSS)
    kwargs.update(overrides)
    return VQGANConfig(**kwargs)


def from_diffusers(cls, model_or_path, subfolder: str | None = None, **config_overrides: Any):
    """Imports a `diffusers.VQModel` (an instance, a folder or a Hub id) as a [`VQGANModel`].

    Works for LDM's VQ first stages, aMUSEd's `vqvae` (pass `pixel_range=(0.0, 1.0)`: it works on [0, 1] images) and
    Kandinsky 2.2's MoVQ (`movq`). The result computes the same images in fp32 (up to rounding).

    Args:
        model_or_path (`diffusers.VQModel`, `str` or `os.PathLike`): the model, or where `VQModel.from_pretrained`
            finds it.
        subfolder (`str`, *optional*): the component's folder inside a pipeline repository (e.g. `"vqvae"`, `"movq"`).
        config_overrides: [`VQGANConfig`] fields to set on top of the translated config (e.g. `pixel_range`).
    """
    diffusers = _require_diffusers()
    if isinstance(model_or_path, (str, os.PathLike)):
        vq_model = diffusers.VQModel.from_pretrained(model_or_path, subfolder=subfolder)
    elif isinstance(model_or_path, diffusers.VQModel):
        vq_model = model_or_path
    else:
        raise TypeError(
            "`model_or_path` must be a diffusers.VQModel or a path / Hub id of one; "
            f"got {type(model_or_path).__name__}."
        )
    config = config_from_diffusers(vq_model.config, **config_overrides)
    model = cls(config)
    state_dict = vq_model.state_dict()
    result = model.load_state_dict(state_dict, strict=False)
    # Our quantizer may own buffers VQModel lacks (usage statistics); they keep their initial values.
    missing = [k for k in result.missing_keys if not k.startswith("quantize.") or k == "quantize.embedding.weight"]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"This VQModel's weights do not match the VQ-GAN architecture (missing {missing[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}): it is not a layout hf-vq can import."
        )
    parameter = next(vq_model.parameters())
    model.to(device=parameter.device, dtype=parameter.dtype)
    model.train(vq_model.training)
    model.card_info = {
        "training": {"source": f"imported from diffusers.VQModel {vq_model.config.get('_name_or_path', '')}".strip()}
    }
    return model


class _ComponentTypeWarningFilter(logging.Filter):
    """Drops diffusers' "Expected types for vqvae: (VQModel,), got VQGANModel" for hf-vq's single-grid tokenizers.

    `DiffusionPipeline.from_pretrained` checks each component against the pipeline's type annotation
    (`vqvae: VQModel`) with `isinstance`. Our models are not `VQModel` subclasses but implement its interface
    (`encode(x).latents`, `decode(h, force_not_quantize, shape)`, `quantize`, the config fields pipelines read;
    tested pipeline by pipeline in `tests/test_diffusers_pipelines.py`), so for them the warning is wrong. Every
    other message, this one about any other class included, passes.
    """

    _PATTERN = re.compile(r"Expected types for \w+: \(.*\bVQModel\b.*\), got <class '(?:[\w.]+\.)?(\w+)'>\.?$")

    def filter(self, record: logging.LogRecord) -> bool:
        match = self._PATTERN.match(record.getMessage())
        return match is None or match.group(1) not in _single_grid_class_names()


def _single_grid_class_names() -> set[str]:
    names, pending = set(), [SingleGridMixin]
    while pending:
        for subclass in pending.pop().__subclasses__():
            names.add(subclass.__name__)
            pending.append(subclass)
    return names


# The logger diffusers' pipeline loading warns on (a filter acts on the records of its own logger only).
_PIPELINE_LOGGER = "diffusers.pipelines.pipeline_utils"
if not any(isinstance(f, _ComponentTypeWarningFilter) for f in logging.getLogger(_PIPELINE_LOGGER).filters):
    logging.getLogger(_PIPELINE_LOGGER).addFilter(_ComponentTypeWarningFilter())


__all__ = [
    "config_from_diffusers",
    "diffusers_config_kwargs",
    "from_diffusers",
    "inexpressible_options",
    "to_diffusers",
]


register_integrations(to_diffusers=to_diffusers, from_diffusers=from_diffusers)
