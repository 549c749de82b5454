"""Converter for LlamaGen (Sun et al. 2024, arXiv:2406.06525; github.com/FoundationVision/LlamaGen, MIT license):
its image tokenizers (`tokenizer/tokenizer_image/vq_model.py`) as [`VQGANModel`] and its class-conditional GPTs
(`autoregressive/models/gpt.py`) as [`VQPriorForCausalLM`] (`llamagen_gpt.py`), written as a tokenizer folder or a
[`VQImagePipeline`] folder.

Checkpoints are read as LlamaGen writes them, with `torch.load(weights_only=True)` and one class allowed beyond
tensors and containers, `argparse.Namespace` (the `"args"` of trainer checkpoints): no other object is unpickled. The
weights sit under `"model"`, `"module"` or `"state_dict"`, or the file is the bare state dict that LlamaGen's FSDP
runs (XXL, 3B) save; `_orig_mod.` / `module.` prefixes (torch.compile, DDP) are stripped.

The tokenizer is taming's VQGAN with three differences that [`VQGANConfig`] expresses: 8-dim codes
(`vq_embed_dim=8`), searched on the unit sphere (`codebook_l2_norm=True`), and self-attention in the lowest-resolution
level of encoder and decoder whatever the image size. Its keys are taming's under other names (`conv_blocks.{i}.res`
for `down.{i}.block`, `mid.{0,1,2}` for `mid.{block_1,attn_1,block_2}`, the decoder's `conv_blocks` in the order they
run), so they are renamed to taming's and converted by `taming.convert_taming_state_dict`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from ..modeling.configuration_vqgan import VQGANConfig
from ..modeling.modeling_vqgan import VQGANModel
from .llamagen_gpt import GPT_MODELS, convert_llamagen_gpt
from .taming import convert_taming_state_dict

# LlamaGen's tokenizers (`VQ_models` in vq_model.py): channel multipliers; the rest is `ModelArgs`' defaults.
VQ_MODELS: dict[str, dict[str, Any]] = {
    "VQ-16": {"ch_mult": [1, 1, 2, 2, 4]},
    "VQ-8": {"ch_mult": [1, 2, 2, 4]},
}
VQ_DEFAULTS = {"ch": 128, "z_channels": 256, "num_res_blocks": 2, "commit_loss_beta": 0.25, "entropy_loss_ratio": 0.0}
WEIGHT_KEYS = ("model", "module", "state_dict")
_PREFIXES = ("_orig_mod.", "module.")

# Published numbers (LlamaGen's README): generation FID on ImageNet 256x256 (384-px models evaluated after resizing
# to 256), and the tokenizers' reconstruction FID.
PUBLISHED_FID = {
    ("GPT-B", 256): 5.46,
    ("GPT-B", 384): 6.09,
    ("GPT-L", 256): 3.80,
    ("GPT-L", 384): 3.07,
    ("GPT-XL", 384): 2.62,
    ("GPT-XXL", 384): 2.34,
    ("GPT-3B", 384): 2.18,
}
PUBLISHED_RFID = {("VQ-16", 256): 2.19, ("VQ-16", 384): 0.94, ("VQ-8", 256): 0.59}
# LlamaGen's sampling defaults (sample_c2i.py), which its README's demos use.
SAMPLING_DEFAULTS = {"guidance_scale": 4.0, "top_k": 2000, "temperature": 1.0}


@dataclass
class LlamaGenCheckpoint:
    """A LlamaGen checkpoint as read by [`load_llamagen_checkpoint`].

    Args:
        state_dict (`dict[str, torch.Tensor]`): the model's weights in LlamaGen's names.
        args (`dict`, *optional*): the trainer's `argparse.Namespace`, as a dict, when the file has one.
        source (`str`): the file's name, for messages.
    """

    state_dict: dict[str, torch.Tensor]
    args: dict[str, Any] | None
    source: str


# ---------------------------------------------------------------------------------------------------- reading


def load_llamagen_checkpoint(path: str | os.PathLike) -> LlamaGenCheckpoint:
    """Reads a LlamaGen `.pt` with `weights_only=True` (allowing `argparse.Namespace` only) and finds its weights."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No LlamaGen checkpoint at {path}.")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:  # mapped, not read: a 3B checkpoint is 12 GB
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # a file in the legacy (non-zip) format cannot be mapped
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds objects other than tensors, containers and the trainer's argparse.Namespace, which hf-vq "
            f"does not unpickle ({str(error).splitlines()[0]}). LlamaGen's own checkpoints hold none; if you trust "
            f"this file, save only its weights (`torch.save({{'model': checkpoint['model']}}, ...)`) and convert that."
        ) from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not a LlamaGen checkpoint: expected a dict, got {type(checkpoint).__name__}.")
    args = checkpoint.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else None
    found = [key for key in WEIGHT_KEYS if isinstance(checkpoint.get(key), dict)]
    state_dict = checkpoint[found[0]] if found else checkpoint  # a bare state dict (LlamaGen's FSDP checkpoints)
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(state_dict):
        raise ValueError(
            f"{path} is not a LlamaGen checkpoint: its weights must be a dict of tensors under one of {WEIGHT_KEYS}, "
            f"or the file a bare state dict; got keys {sorted(map(str, checkpoint))[:8]}."
        )
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return LlamaGenCheckpoint(tensors, args, path.name)


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-id order (`imagenet_classes.tsv`: WordNet's first lemma of each
    sorted synset, made unique), the ids LlamaGen's class-conditional GPTs use."""
    lines = (Path(__file__).with_name("imagenet_classes.tsv")).read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    return tuple(name for _, _, name, _ in rows)


# ---------------------------------------------------------------------------------------------------- tokenizer


def vq_spec(vq_model: str | dict[str, Any], codebook_size: int = 16384, codebook_embed_dim: int = 8) -> dict:
    """LlamaGen's tokenizer `ModelArgs` of a named size (`"VQ-16"`, `"VQ-8"`) or a dict of them (a custom size)."""
    if isinstance(vq_model, str):
        if vq_model not in VQ_MODELS:
            raise ValueError(
                f"`vq_model` must be one of LlamaGen's tokenizers {list(VQ_MODELS)}; got {vq_model!r}. Pass the "
                "--vq-model the checkpoint was trained with (VQ-16 for vq_ds16_c2i.pt, VQ-8 for vq_ds8_c2i.pt)."
            )
        base = {"name": vq_model, **VQ_MODELS[vq_model]}
    else:
        base = {"name": "custom", **vq_model}
    return {**VQ_DEFAULTS, "codebook_size": codebook_size, "codebook_embed_dim": codebook_embed_dim, **base}


def llamagen_vq_config(spec: dict[str, Any], image_size: int = 256) -> VQGANConfig:
    """The [`VQGANConfig`] of a LlamaGen tokenizer `spec` ([`vq_spec`])."""
    levels = len(spec["ch_mult"])
    # Attention after every ResNet block of the lowest-resolution level (LlamaGen: `i_level == num_resolutions - 1`).
    down = ["DownEncoderBlock2D"] * (levels - 1) + ["AttnDownEncoderBlock2D"]
    return VQGANConfig(
        in_channels=3,
        out_channels=3,
        block_out_channels=[spec["ch"] * m for m in spec["ch_mult"]],
        down_block_types=down,
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * (levels - 1),
        layers_per_block=spec["num_res_blocks"],
        latent_channels=spec["z_channels"],
        num_vq_embeddings=spec["codebook_size"],
        vq_embed_dim=spec["codebook_embed_dim"],
        codebook_l2_norm=True,
        norm_num_groups=32,  # LlamaGen's `Normalize`: GroupNorm(32, eps=1e-6)
        mid_block_add_attention=True,
        sample_size=image_size,
        commitment_cost=float(spec["commit_loss_beta"]),  # LlamaGen puts beta on the commitment term, as hf-vq does
        entropy_loss_weight=float(spec["entropy_loss_ratio"]),
        reconstruction_loss_type="l1",
        pixel_range=(-1.0, 1.0),
    )


_VQ_RENAMES = [
    (re.compile(r"^encoder\.conv_blocks\.(\d+)\.res\."), lambda m, n: f"encoder.down.{m[1]}.block."),
    (re.compile(r"^encoder\.conv_blocks\.(\d+)\.(attn|downsample)\."), lambda m, n: f"encoder.down.{m[1]}.{m[2]}."),
    (re.compile(r"^decoder\.conv_blocks\.(\d+)\.res\."), lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.block."),
    (
        re.compile(r"^decoder\.conv_blocks\.(\d+)\.(attn|upsample)\."),
        lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.{m[2]}.",
    ),
    (re.compile(r"^(encoder|decoder)\.mid\.0\."), lambda m, n: f"{m[1]}.mid.block_1."),
    (re.compile(r"^(encoder|decoder)\.mid\.1\."), lambda m, n: f"{m[1]}.mid.attn_1."),
    (re.compile(r"^(encoder|decoder)\.mid\.2\."), lambda m, n: f"{m[1]}.mid.block_2."),
]
_VQ_DROPPED = ("quantize.codebook_used",)  # a training-time usage buffer


def llamagen_to_taming_names(state_dict: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """LlamaGen tokenizer keys -> taming's (the decoder's `conv_blocks` run lowest resolution first, taming's `up` is
    indexed from the highest)."""
    renamed = {}
    for key, value in state_dict.items():
        if key in _VQ_DROPPED:
            continue
        for pattern, replace in _VQ_RENAMES:
            match = pattern.match(key)
            if match:
                key = replace(match, levels) + key[match.end() :]
                break
        renamed[key] = value
    return renamed


def describe_vq_state_dict(state_dict: dict[str, torch.Tensor]) -> str:
    """What a tokenizer state dict looks like, and the `--vq-model` / codebook flags that fit it."""
    levels = len({k.split(".")[2] for k in state_dict if k.startswith("encoder.conv_blocks.")})
    names = [name for name, spec in VQ_MODELS.items() if len(spec["ch_mult"]) == levels]
    codebook = state_dict.get("quantize.embedding.weight")
    shape = "no `quantize.embedding.weight`" if codebook is None else f"a {tuple(codebook.shape)} codebook"
    fits = f"--vq-model {names[0]}" if names else "no named tokenizer"
    flags = (
        "" if codebook is None else f" --codebook-size {codebook.shape[0]} --codebook-embed-dim {codebook.shape[1]}"
    )
    return f"{levels} encoder levels and {shape}; it fits {fits}{flags}"


def convert_llamagen_tokenizer(
    checkpoint: str | os.PathLike | LlamaGenCheckpoint,
    vq_model: str | dict[str, Any] = "VQ-16",
    codebook_size: int = 16384,
    codebook_embed_dim: int = 8,
    image_size: int = 256,
) -> VQGANModel:
    """A LlamaGen tokenizer checkpoint (`vq_ds16_c2i.pt`, ...) as a [`VQGANModel`], in eval mode.

    Args:
        checkpoint (`str`, `os.PathLike` or [`LlamaGenCheckpoint`]): the `.pt` file, or one already read.
        vq_model (`str` or `dict`, *optional*, defaults to `"VQ-16"`): `"VQ-16"`, `"VQ-8"`, or a dict of LlamaGen's
            tokenizer `ModelArgs` (`ch_mult`, and `ch`, `z_channels`, `num_res_blocks` if not the defaults).
        codebook_size (`int`, *optional*, defaults to 16384) and codebook_embed_dim (`int`, *optional*, defaults
            to 8): LlamaGen's `--codebook-size` and `--codebook-embed-dim`.
        image_size (`int`, *optional*, defaults to 256): recorded as the config's `sample_size`.
    """
    if not isinstance(checkpoint, LlamaGenCheckpoint):
        checkpoint = load_llamagen_checkpoint(checkpoint)
    spec = vq_spec(vq_model, codebook_size, codebook_embed_dim)
    config = llamagen_vq_config(spec, image_size)
    levels = len(spec["ch_mult"])
    try:
        converted = convert_taming_state_dict(llamagen_to_taming_names(checkpoint.state_dict, levels), config)
    except ValueError:
        converted = None
    with torch.device("meta"):
        model = VQGANModel(config)
    expected = {
        k: v for k, v in model.state_dict().items() if not k.startswith("quantize.") or k.endswith("embedding.weight")
    }
    if (
        converted is None
        or set(converted) != set(expected)
        or any(converted[k].shape != v.shape for k, v in expected.items())
    ):
        found = describe_vq_state_dict(checkpoint.state_dict)
        channels = f"channels {config.block_out_channels}, {spec['codebook_size']}x{spec['codebook_embed_dim']} codes"
        raise ValueError(
            f"{checkpoint.source} is not a LlamaGen {spec['name']} tokenizer ({channels}): the file has {found}. "
            "Pass the tokenizer checkpoint (vq_ds16_c2i.pt / vq_ds8_c2i.pt) with the flags it was trained with."
        )
    model = VQGANModel(config)  # real buffers (the quantizer's health counters), then the weights
    model.load_state_dict(converted, strict=False)
    model.card_info = {
        "training": {
            "source": f"converted from LlamaGen's {spec['name']} tokenizer {checkpoint.source} (MIT license)",
            "converter": f"hf-vq convert llamagen --vq-model {spec['name']}",
        },
        "tags": ["llamagen", "vqgan", "converted"],
    }
    return model.eval()


# ---------------------------------------------------------------------------------------------------- writing


def _write_atomically(output_dir: Path, write) -> None:
    """Calls `write(folder)` on a sibling staging folder and renames it to `output_dir`: a reader never sees half a
    conversion, and a failed one leaves nothing."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} exists and is not empty; pass a new folder (or remove that one).")
    staging = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        write(staging)
        if output_dir.exists():
            output_dir.rmdir()
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def convert_llamagen(
    vq_checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    gpt_checkpoint: str | os.PathLike | None = None,
    gpt_model: str | dict[str, Any] = "GPT-B",
    image_size: int = 256,
    vq_model: str | dict[str, Any] = "VQ-16",
    codebook_size: int = 16384,
    codebook_embed_dim: int = 8,
):
    """Converts a LlamaGen tokenizer, and optionally a class-conditional GPT over its ids, to hf-vq.

    Args:
        vq_checkpoint (`str` or `os.PathLike`): the tokenizer checkpoint (`vq_ds16_c2i.pt`).
        output_dir (`str` or `os.PathLike`, *optional*): a new folder to write: the tokenizer's `save_pretrained`
            folder, or with a GPT a [`VQImagePipeline`] folder (tokenizer in `vqvae/`, prior in `transformer/`, card).
        gpt_checkpoint (`str` or `os.PathLike`, *optional*): the GPT checkpoint (`c2i_B_256.pt`).
        gpt_model (`str` or `dict`, *optional*, defaults to `"GPT-B"`): its size ([`GPT_MODELS`]) or custom fields.
        image_size (`int`, *optional*, defaults to 256): the GPT's image size (256 or 384 with VQ-16).
        vq_model, codebook_size, codebook_embed_dim: see [`convert_llamagen_tokenizer`].

    Returns:
        The [`VQGANModel`], or with a GPT the [`VQImagePipeline`].
    """
    tokenizer = convert_llamagen_tokenizer(vq_checkpoint, vq_model, codebook_size, codebook_embed_dim, image_size)
    if gpt_checkpoint is None:
        if output_dir is not None:
            _write_atomically(Path(output_dir), tokenizer.save_pretrained)
        return tokenizer
    gpt = load_llamagen_checkpoint(gpt_checkpoint)
    check_trainer_args(gpt.args, gpt_model, image_size, tokenizer)
    fields: dict[str, Any] = {"tokenizer_name_or_path": Path(vq_checkpoint).name}
    classes = gpt.state_dict.get("cls_embedding.embedding_table.weight")
    if classes is not None and classes.shape[0] - 1 == len(imagenet_class_names()):
        fields["id2label"] = dict(enumerate(imagenet_class_names()))
    prior = convert_llamagen_gpt(gpt.state_dict, tokenizer, gpt_model, image_size, source=gpt.source, **fields)

    from ..pipelines import VQImagePipeline

    pipe = VQImagePipeline(vqvae=tokenizer, transformer=prior)
    if output_dir is not None:
        output_dir = Path(output_dir)

        def write(folder: Path) -> None:
            pipe.save_pretrained(folder)
            write_llamagen_card(folder, pipe, output_dir, gpt.source, Path(vq_checkpoint).name, gpt_model, vq_model)

        _write_atomically(output_dir, write)
    return pipe


def check_trainer_args(args: dict | None, gpt_model, image_size: int, tokenizer) -> None:
    """When a trainer checkpoint records its `args`, they must agree with the flags given."""
    if not args:
        return
    expected = {"image_size": image_size, "downsample_size": tokenizer.downsampling_factor}
    if isinstance(gpt_model, str):
        expected["gpt_model"] = gpt_model
    wrong = {k: (v, args[k]) for k, v in expected.items() if k in args and args[k] != v}
    if args.get("gpt_type", "c2i") != "c2i":
        wrong["gpt_type"] = ("c2i", args["gpt_type"])
    if wrong:
        flags = ", ".join(f"--{k.replace('_', '-')} {theirs} (given {ours})" for k, (ours, theirs) in wrong.items())
        raise ValueError(
            f"The GPT checkpoint was trained with {flags}, according to the `args` it records. Convert it with the "
            "flags it was trained with (the rotary grid and the class table depend on them)."
        )


def write_llamagen_card(folder: Path, pipe, output_dir: Path, gpt_source: str, vq_source: str, gpt_model, vq_model):
    """The card of a converted pipeline: origin, license (MIT), published FID and the parity hf-vq verifies."""
    from ..hub.prior_cards import write_pipeline_card

    prior = pipe.transformer
    size = prior.config.image_size[0]
    name = gpt_model if isinstance(gpt_model, str) else "custom"
    fid = PUBLISHED_FID.get((name, size))
    tokenizer_name = vq_model if isinstance(vq_model, str) else "custom"
    origin = {
        "source": f"LlamaGen (Sun et al. 2024, arXiv:2406.06525), {name} `{gpt_source}` over the {tokenizer_name} "
        f"tokenizer `{vq_source}`",
        "license": "MIT (LlamaGen's weights and code)",
        "published_fid": (
            f"{fid} (ImageNet 256x256{', sampled at 384 px and resized' if size != 256 else ''}; LlamaGen's README)"
            if fid is not None
            else "none published for this size"
        ),
        "parity": (
            "logits equal to LlamaGen's `Transformer.forward` within 1e-5 (fp32), identical greedy guided tokens "
            "(with and without `cfg_interval`), identical tokenizer ids, decoded pixels within 3e-5 (fp32 reduction "
            "order): `benchmarks/llamagen_parity.py` on random weights of every GPT size and of VQ-16 / VQ-8 "
            "(`benchmarks/results/llamagen_parity_cpu.md`)"
        ),
        "sampling": ", ".join(f"`{k}={v}`" for k, v in SAMPLING_DEFAULTS.items()),
    }
    write_pipeline_card(
        folder,
        prior,
        title=output_dir.resolve().name,
        model_id=str(output_dir),
        tokenizer_class=type(pipe.vqvae).__name__,
        tokenizer=vq_source,
        dataset="ImageNet-1k",
        training={"converter": f"hf-vq convert llamagen --gpt-model {name} --image-size {size}"},
        origin=origin,
        license="mit",
        guidance_scale=SAMPLING_DEFAULTS["guidance_scale"],
    )


__all__ = [
    "GPT_MODELS",
    "PUBLISHED_FID",
    "SAMPLING_DEFAULTS",
    "VQ_MODELS",
    "LlamaGenCheckpoint",
    "check_trainer_args",
    "convert_llamagen",
    "convert_llamagen_tokenizer",
    "imagenet_class_names",
    "llamagen_to_taming_names",
    "llamagen_vq_config",
    "load_llamagen_checkpoint",
    "vq_spec",
]
