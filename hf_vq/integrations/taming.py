"""Converter for taming-transformers VQ-GAN and latent-diffusion (LDM) VQ first-stage checkpoints.

Reads a Lightning `.ckpt` with `torch.load(weights_only=True)` (no code from the file runs) plus its config yaml,
and produces a [`VQGANModel`] (and, when the checkpoint has one, the PatchGAN as a [`VQGANDiscriminator`]):

- LDM checkpoints of a whole latent-diffusion model: the `first_stage_model.` weights are used, the rest ignored;
  the first stage's config is read from `model.params.first_stage_config`.
- `model_ema.*` (LDM's `LitEma` shadow weights, named without dots) are used instead of the raw weights with
  `use_ema=True`, else dropped.
- `loss.discriminator.*` -> the discriminator (taming's `NLayerDiscriminator` with BatchNorm has our `main.{i}`
  names); `loss.perceptual_loss.*` (the frozen LPIPS copy) is dropped.
- taming's quantizer puts β on the codebook term; the config gets `beta_placement="codebook"` so the converted
  model's `quantizer_loss` equals taming's.

Module renames (taming -> ours = diffusers' VQModel): `down.{i}.block.{j}` -> `down_blocks.{i}.resnets.{j}`,
`nin_shortcut` -> `conv_shortcut`, `attn.{j}.{norm,q,k,v,proj_out}` (1x1 convs) ->
`attentions.{j}.{group_norm,to_q,to_k,to_v,to_out.0}` (linears), `mid.{block_1,attn_1,block_2}` ->
`mid_block.{resnets.0,attentions.0,resnets.1}`, `norm_out` -> `conv_norm_out`, and the decoder's `up.{i}` (indexed
from the highest resolution) -> `up_blocks.{levels - 1 - i}` (in the order they run).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..modeling.configuration_discriminator import VQGANDiscriminatorConfig
from ..modeling.configuration_vqgan import VQGANConfig
from ..modeling.modeling_discriminator import VQGANDiscriminator
from ..modeling.modeling_vqgan import VQGANModel

logger = logging.getLogger(__name__)

SUPPORTED_TARGETS = (
    "taming.models.vqgan.VQModel",
    "ldm.models.autoencoder.VQModel",
    "ldm.models.autoencoder.VQModelInterface",
)
SUPPORTED_LOSSES = (
    "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
    "taming.modules.losses.DummyLoss",
    "torch.nn.Identity",
)
FIRST_STAGE_PREFIX = "first_stage_model."
EMA_PREFIX = "model_ema."


@dataclass
class ConvertedCheckpoint:
    """What [`convert_taming_checkpoint`] returns.

    Args:
        model ([`VQGANModel`]): the tokenizer, in eval mode.
        discriminator ([`VQGANDiscriminator`], *optional*): the checkpoint's PatchGAN, if it has one.
        dropped_keys (`list[str]`): checkpoint keys that were not carried over (LPIPS copy, EMA, the diffusion
            model around an LDM first stage, ...).
    """

    model: VQGANModel
    discriminator: VQGANDiscriminator | None
    dropped_keys: list[str]


# ---------------------------------------------------------------------------------------------------- reading


def load_checkpoint_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning / plain PyTorch checkpoint, read with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # Lightning checkpoints may pickle optimizer/callback objects or an OmegaConf config, which
        # weights_only refuses. Stripping them needs one full (unsafe) load, which only the user can decide on.
        stripped = path.with_name(path.stem + ".weights.ckpt")
        raise ValueError(
            f"{path} holds objects other than tensors, which `torch.load(weights_only=True)` refuses to unpickle "
            f"({str(error).splitlines()[0]}). If you trust the file, keep only its weights and convert that:\n"
            f"  python -c \"import torch; c = torch.load('{path}', map_location='cpu', weights_only=False); "
            f"torch.save({{'state_dict': c['state_dict']}}, '{stripped}')\""
        ) from error
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        keys = list(checkpoint)[:8] if isinstance(checkpoint, dict) else "-"
        raise ValueError(
            f"{path} is not a taming / LDM checkpoint: expected a dict with a `state_dict` of tensors (or a plain "
            f"state dict); got {type(checkpoint).__name__} with keys {keys}."
        )
    return state_dict


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as error:  # pragma: no cover - pyyaml comes with the training extra
        raise ImportError("Reading taming configs needs PyYAML: `pip install pyyaml`.") from error
    with open(path) as handle:
        return yaml.safe_load(handle)


# ---------------------------------------------------------------------------------------------------- configs


def _first_stage(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    model = config.get("model", config)
    target, params = model.get("target", ""), model.get("params", {})
    if "first_stage_config" in params:  # a whole latent-diffusion model: its VQ first stage
        model = params["first_stage_config"]
        target, params = model.get("target", ""), model.get("params", {})
    if target not in SUPPORTED_TARGETS:
        raise ValueError(
            f"Unsupported first-stage model {target!r}: the converter handles {SUPPORTED_TARGETS} (nearest-code VQ "
            "with taming's Encoder/Decoder). Gumbel / EMA quantizers and KL autoencoders are other architectures."
        )
    if "ddconfig" not in params or "n_embed" not in params or "embed_dim" not in params:
        raise ValueError(
            f"The config of {target} must have `params.ddconfig`, `params.n_embed` and `params.embed_dim`."
        )
    return target, params


def taming_config_to_vqgan(config: dict[str, Any]) -> tuple[VQGANConfig, VQGANDiscriminatorConfig | None]:
    """Our configs for a taming / LDM yaml (already parsed): the tokenizer's, and the discriminator's if it has one."""
    _, params = _first_stage(config)
    dd = params["ddconfig"]
    unsupported = {
        "double_z": (dd.get("double_z", True), False),
        "resamp_with_conv": (dd.get("resamp_with_conv", True), True),
        "give_pre_end": (dd.get("give_pre_end", False), False),
        "use_linear_attn": (dd.get("use_linear_attn", False), False),
        "remap": (params.get("remap"), None),
    }
    for name, (value, supported) in unsupported.items():
        if value != supported:
            raise ValueError(
                f"`{name}: {value}` in the config is not supported by the converter (expected {supported})."
            )
    attn_type = dd.get("attn_type", "vanilla")
    if attn_type not in ("vanilla", "none"):
        raise ValueError(f"`attn_type: {attn_type}` is not supported; the converter handles 'vanilla' and 'none'.")

    levels = len(dd["ch_mult"])
    attn_resolutions = set(dd.get("attn_resolutions", [])) if attn_type == "vanilla" else set()
    resolutions = [dd["resolution"] // 2**i for i in range(levels)]
    down = ["AttnDownEncoderBlock2D" if r in attn_resolutions else "DownEncoderBlock2D" for r in resolutions]
    vqgan_config = VQGANConfig(
        in_channels=dd["in_channels"],
        out_channels=dd["out_ch"],
        block_out_channels=[dd["ch"] * m for m in dd["ch_mult"]],
        down_block_types=down,
        up_block_types=[t.replace("Down", "Up").replace("Encoder", "Decoder") for t in reversed(down)],
        layers_per_block=dd["num_res_blocks"],
        latent_channels=dd["z_channels"],
        num_vq_embeddings=params["n_embed"],
        vq_embed_dim=params["embed_dim"],
        norm_num_groups=32,  # taming's `Normalize` hard-codes 32 groups
        mid_block_add_attention=attn_type == "vanilla",
        dropout=float(dd.get("dropout", 0.0)),
        sample_size=dd["resolution"],
        commitment_cost=0.25,  # taming's VectorQuantizer(beta=0.25), hard-coded in its VQModel
        beta_placement="codebook",  # ... on the codebook term: keep it so converted losses equal taming's
        reconstruction_loss_type="l1",
        pixel_range=(-1.0, 1.0),
    )

    loss = params.get("lossconfig", {}) or {}
    loss_target, loss_params = loss.get("target", ""), loss.get("params", {}) or {}
    if loss_params.get("codebook_weight", 1.0) != 1.0:
        logger.warning(
            "The checkpoint's loss weighs the whole quantizer loss by codebook_weight=%s; hf-vq's quantizer loss is "
            "unweighted, so set that weight in your training objective to reproduce it.",
            loss_params["codebook_weight"],
        )
    if loss_target != "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator":
        return vqgan_config, None
    if loss_params.get("use_actnorm", False):
        raise ValueError(
            "The checkpoint's discriminator uses ActNorm (`use_actnorm: true`), which VQGANDiscriminator does not "
            "have. Convert without it: `include_discriminator=False` (CLI: --no-discriminator)."
        )
    disc_config = VQGANDiscriminatorConfig(
        in_channels=loss_params.get("disc_in_channels", 3),
        base_channels=loss_params.get("disc_ndf", 64),
        num_layers=loss_params.get("disc_num_layers", 3),
        max_channel_multiplier=8,
        norm_type="batch",  # taming's NLayerDiscriminator: BatchNorm, bias-free convs under it
    )
    return vqgan_config, disc_config


# ---------------------------------------------------------------------------------------------------- weights

_RESNET = r"(?P<part>norm1|conv1|norm2|conv2|nin_shortcut)\.(?P<param>weight|bias)"
_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_PATTERNS = [
    (re.compile(rf"^(?P<side>encoder)\.down\.(?P<level>\d+)\.block\.(?P<j>\d+)\.{_RESNET}$"), "resnet"),
    (re.compile(rf"^(?P<side>decoder)\.up\.(?P<level>\d+)\.block\.(?P<j>\d+)\.{_RESNET}$"), "resnet"),
    (
        re.compile(
            r"^(?P<side>encoder)\.down\.(?P<level>\d+)\.attn\.(?P<j>\d+)\.(?P<part>norm|q|k|v|proj_out)\.(?P<param>weight|bias)$"
        ),
        "attention",
    ),
    (
        re.compile(
            r"^(?P<side>decoder)\.up\.(?P<level>\d+)\.attn\.(?P<j>\d+)\.(?P<part>norm|q|k|v|proj_out)\.(?P<param>weight|bias)$"
        ),
        "attention",
    ),
    (re.compile(r"^(?P<side>encoder)\.down\.(?P<level>\d+)\.downsample\.conv\.(?P<param>weight|bias)$"), "downsample"),
    (re.compile(r"^(?P<side>decoder)\.up\.(?P<level>\d+)\.upsample\.conv\.(?P<param>weight|bias)$"), "upsample"),
    (re.compile(rf"^(?P<side>encoder|decoder)\.mid\.(?P<block>block_1|block_2)\.{_RESNET}$"), "mid_resnet"),
    (
        re.compile(r"^(?P<side>encoder|decoder)\.mid\.attn_1\.(?P<part>norm|q|k|v|proj_out)\.(?P<param>weight|bias)$"),
        "mid_attention",
    ),
]
_DIRECT = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.norm_out": "encoder.conv_norm_out",
    "encoder.conv_out": "encoder.conv_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.norm_out": "decoder.conv_norm_out",
    "decoder.conv_out": "decoder.conv_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
    "quantize.embedding": "quantize.embedding",
}


def _rename(key: str, levels: int) -> str | None:
    """Our name for a taming autoencoder key, or None if the key is not part of taming's layout."""
    module, _, param = key.rpartition(".")
    if module in _DIRECT:
        return f"{_DIRECT[module]}.{param}"
    for pattern, kind in _PATTERNS:
        match = pattern.match(key)
        if match is None:
            continue
        groups = match.groupdict()
        side, param = groups["side"], groups["param"]
        if "level" in groups:
            level = int(groups["level"])
            # taming's decoder.up is indexed from the highest resolution; up_blocks run from the lowest.
            block = f"{side}.down_blocks.{level}" if side == "encoder" else f"{side}.up_blocks.{levels - 1 - level}"
        if kind == "resnet":
            part = "conv_shortcut" if groups["part"] == "nin_shortcut" else groups["part"]
            return f"{block}.resnets.{groups['j']}.{part}.{param}"
        if kind == "attention":
            return f"{block}.attentions.{groups['j']}.{_ATTENTION[groups['part']]}.{param}"
        if kind == "downsample":
            return f"{block}.downsamplers.0.conv.{param}"
        if kind == "upsample":
            return f"{block}.upsamplers.0.conv.{param}"
        if kind == "mid_resnet":
            part = "conv_shortcut" if groups["part"] == "nin_shortcut" else groups["part"]
            index = 0 if groups["block"] == "block_1" else 1
            return f"{side}.mid_block.resnets.{index}.{part}.{param}"
        if kind == "mid_attention":
            return f"{side}.mid_block.attentions.0.{_ATTENTION[groups['part']]}.{param}"
    return None


def split_taming_state_dict(
    state_dict: dict[str, torch.Tensor], use_ema: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Splits a checkpoint's state dict into (autoencoder, discriminator, dropped keys), all in taming's names."""
    if any(k.startswith(FIRST_STAGE_PREFIX) for k in state_dict):
        dropped = [k for k in state_dict if not k.startswith(FIRST_STAGE_PREFIX)]
        state_dict = {
            k[len(FIRST_STAGE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(FIRST_STAGE_PREFIX)
        }
    else:
        dropped = []
    ema = {k[len(EMA_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(EMA_PREFIX)}
    autoencoder, discriminator = {}, {}
    for key, value in state_dict.items():
        if key.startswith((EMA_PREFIX, "loss.perceptual_loss.")) or (
            key.startswith("loss.") and not key.startswith("loss.discriminator.")
        ):
            dropped.append(key)
        elif key.startswith("loss.discriminator."):
            discriminator[key[len("loss.discriminator.") :]] = value
        else:
            autoencoder[key] = value
    if use_ema:
        if not ema:
            raise ValueError("`use_ema=True` but the checkpoint has no `model_ema.*` weights.")
        # LitEma stores each trainable parameter under its name with the dots removed.
        for key in autoencoder:
            shadow = key.replace(".", "")
            if shadow in ema:
                autoencoder[key] = ema[shadow]
        for key in discriminator:
            shadow = ("loss.discriminator." + key).replace(".", "")
            if shadow in ema:
                discriminator[key] = ema[shadow]
    elif ema:
        logger.info(
            "Dropped the checkpoint's %d EMA weights (model_ema.*); use_ema=True converts those instead.", len(ema)
        )
    return autoencoder, discriminator, dropped


def convert_taming_state_dict(state_dict: dict[str, torch.Tensor], config: VQGANConfig) -> dict[str, torch.Tensor]:
    """taming / LDM autoencoder weights (no prefix, no loss) -> our (= diffusers VQModel) names and shapes."""
    levels = len(config.block_out_channels)
    converted, unknown = {}, []
    for key, value in state_dict.items():
        name = _rename(key, levels)
        if name is None:
            unknown.append(key)
            continue
        if ".attentions." in name and value.dim() == 4 and not name.endswith(("group_norm.weight", "group_norm.bias")):
            value = value[:, :, 0, 0]  # 1x1 conv (C, C, 1, 1) -> linear (C, C)
        converted[name] = value
    if unknown:
        raise ValueError(
            f"Unknown checkpoint layout: {len(unknown)} keys are not taming / LDM VQ autoencoder weights, e.g. "
            f"{unknown[:6]}. Supported: taming.models.vqgan.VQModel and ldm.models.autoencoder.VQModel checkpoints."
        )
    return converted


def convert_taming_checkpoint(
    checkpoint_path: str | os.PathLike,
    config_path: str | os.PathLike | dict[str, Any],
    output_dir: str | os.PathLike | None = None,
    use_ema: bool = False,
    include_discriminator: bool = True,
) -> ConvertedCheckpoint:
    """Converts a taming-transformers / LDM VQ `.ckpt` and its config yaml to hf-vq models.

    Args:
        checkpoint_path (`str` or `os.PathLike`): the `.ckpt` (read with `weights_only=True`).
        config_path (`str`, `os.PathLike` or `dict`): its config yaml (e.g. `configs/model.yaml` next to the ckpt),
            or the parsed dict.
        output_dir (`str` or `os.PathLike`, *optional*): if given, the model is saved there with `save_pretrained`
            (model card included) and the discriminator in `output_dir/discriminator`, the layout that
            `hf-vq train --init-from output_dir` resumes from.
        use_ema (`bool`, *optional*, defaults to `False`): take LDM's EMA weights (`model_ema.*`) instead.
        include_discriminator (`bool`, *optional*, defaults to `True`): convert `loss.discriminator.*`.
    """
    config_dict = config_path if isinstance(config_path, dict) else load_yaml(config_path)
    vqgan_config, disc_config = taming_config_to_vqgan(config_dict)
    state_dict = load_checkpoint_state_dict(checkpoint_path)
    autoencoder, disc_state, dropped = split_taming_state_dict(state_dict, use_ema=use_ema)
    if not autoencoder:
        raise ValueError(
            f"Unknown checkpoint layout: {checkpoint_path} has no autoencoder weights (encoder.*, decoder.*)."
        )

    model = VQGANModel(vqgan_config)
    converted = convert_taming_state_dict(autoencoder, vqgan_config)
    expected = model.state_dict()
    missing = [
        k
        for k in expected
        if k not in converted and not (k.startswith("quantize.") and k != "quantize.embedding.weight")
    ]
    if missing:
        raise ValueError(
            f"The checkpoint does not match its config: {len(missing)} weights are missing, e.g. {missing[:6]}. "
            "Is the yaml the one this checkpoint was trained with?"
        )
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise ValueError(f"The checkpoint's shapes differ from its config's: {wrong[:4]}. Check the yaml.")
    model.load_state_dict(converted, strict=False)
    model.eval()

    discriminator = None
    if include_discriminator and disc_config is not None and disc_state:
        discriminator = VQGANDiscriminator(disc_config)
        result = discriminator.load_state_dict(disc_state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                "Unknown discriminator layout: loss.discriminator.* does not match taming's NLayerDiscriminator with "
                f"the config's disc_* settings (missing {result.missing_keys[:4]}, "
                f"unexpected {result.unexpected_keys[:4]}). "
                "Convert without it: include_discriminator=False (CLI: --no-discriminator)."
            )
        discriminator.eval()
    elif disc_state:
        dropped += [f"loss.discriminator.{k}" for k in disc_state]

    source = Path(checkpoint_path).name
    model.card_info = {
        "training": {
            "source": f"converted from the taming-transformers / LDM checkpoint {source}",
            "converter": "hf-vq convert taming" + (" --ema" if use_ema else ""),
        },
        "tags": ["taming-transformers", "vqgan", "converted"],
    }
    if output_dir is not None:
        model.save_pretrained(output_dir)
        if discriminator is not None:
            discriminator.save_pretrained(Path(output_dir) / "discriminator")
    return ConvertedCheckpoint(model=model, discriminator=discriminator, dropped_keys=dropped)


__all__ = [
    "ConvertedCheckpoint",
    "convert_taming_checkpoint",
    "convert_taming_state_dict",
    "load_checkpoint_state_dict",
    "split_taming_state_dict",
    "taming_config_to_vqgan",
]
