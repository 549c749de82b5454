"""What a tokenizer's ids mean, as two digests that a prior and a token set record and check.

An id means a code: the tokenizer's encoder side maps pixels to latents, its codebook maps latents to ids (and ids
back to codes). Two tokenizers agree on every id when both agree:

- [`tokenizer_config_hash`]: the config (architecture, codebook size, quantizer), without the keys that a save, load,
  cast or move changes;
- [`tokenizer_weights_hashes`]: every weight the ids depend on: all parameters and buffers except those of the
  decoding side ([`DECODER_MODULES`]: `decoder`, `post_quant_conv`, VQ-VAE-2's `upsample_top`) and a quantizer's
  training statistics (EMA sums, usage counters, restart steps, which steer training but not the ids). That is the
  encoder, `quant_conv` and the codebooks for VQ-GAN and VQ-VAE; for VQ-VAE-2 also the top encoder, the top decoder
  (it decodes the top codes back to the bottom grid before the bottom ids are chosen) and both 1x1 convs into code
  space; for residual VQ every stage's codebook; FSQ and LFQ have no learned codebook (their grid is config). These
  are the modules `hf-vq train --freeze-encoder --freeze-codebook` freezes, so a decoder-only fine-tune keeps both
  digests and stays usable with a prior trained on the original, while a second training run or a retrained
  codebook with the same config is told apart.

The weights digest is exact (SHA-256 of the bytes), yet the same tokenizer loaded in half precision must still pass:
it is recorded once per dtype (`float32`, `float16`, `bfloat16`: each weight cast to it, as `model.to(dtype)` would),
and checked in the dtype the tokenizer holds (the least precise of its floating weights, so a half-precision encoder
beside an fp32 codebook compares as half precision).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Modules only decoding uses: a change to them does not change any id.
DECODER_MODULES = ("decoder", "post_quant_conv", "upsample_top")
IDENTITY_DTYPES = ("float32", "float16", "bfloat16")

# Keys of a tokenizer's config that change when it is saved, loaded, cast or moved but do not change its ids.
_VOLATILE_TOKENIZER_KEYS = {
    "transformers_version",
    "architectures",
    "auto_map",
    "dtype",
    "torch_dtype",
    "name_or_path",
}


def tokenizer_config_hash(tokenizer_or_config: Any) -> str:
    """A stable hash of a tokenizer's config: equal for the same tokenizer after a save / load round trip, different
    for any change to a field (codebook, architecture, quantizer) that could change its ids.

    Args:
        tokenizer_or_config (`PreTrainedModel`, `PreTrainedConfig` or `dict`):
            The tokenizer (an hf-vq model), its config, or the config's `to_dict()`.
    """
    config = getattr(tokenizer_or_config, "config", tokenizer_or_config)
    fields = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    fields = {k: v for k, v in fields.items() if k not in _VOLATILE_TOKENIZER_KEYS and not k.startswith("_")}
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_tensors(tokenizer) -> dict[str, Any]:
    """The tensors that give `tokenizer`'s ids their meaning, by state-dict name (see the module docstring)."""
    from .quantizer_base import BaseQuantizer

    tensors = {}
    for prefix, module in tokenizer.named_modules():
        if prefix.split(".", 1)[0] in DECODER_MODULES:
            continue
        for name, parameter in module.named_parameters(prefix=prefix, recurse=False):
            tensors[name] = parameter
        if isinstance(module, BaseQuantizer):  # its buffers are training statistics
            continue
        skipped = module._non_persistent_buffers_set
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and name not in skipped:
                tensors[f"{prefix}.{name}" if prefix else name] = buffer
    return tensors


def tokenizer_weights_hashes(tokenizer, dtypes: tuple[str, ...] = IDENTITY_DTYPES) -> dict[str, str]:
    """`{dtype: digest}` of the weights that give `tokenizer`'s ids their meaning, each weight cast to `dtype` first.

    Args:
        tokenizer (`VQPreTrainedModel`):
            An hf-vq tokenizer.
        dtypes (`tuple[str, ...]`, *optional*, defaults to `("float32", "float16", "bfloat16")`):
            The dtypes to digest the weights in.
    """
    tensors = identity_tensors(tokenizer)
    return {dtype: _digest(tensors, dtype) for dtype in dtypes}


def held_dtype(tokenizer) -> str:
    """The dtype `tokenizer`'s weights digest is checked in: the least precise floating dtype of its identity
    tensors (`"float32"` for float32 and float64 alike)."""
    import torch

    held = {t.dtype for t in identity_tensors(tokenizer).values() if t.is_floating_point()}
    for dtype in (torch.bfloat16, torch.float16):
        if dtype in held:
            return str(dtype).removeprefix("torch.")
    return "float32"


def weights_hash_differs(tokenizer, recorded: dict[str, str] | None) -> tuple[str, str] | None:
    """`(received, expected)` digests when `tokenizer`'s weights are not the recorded ones, else None (also when
    nothing was recorded: a prior or token set from before the weights were recorded).

    Args:
        tokenizer (`VQPreTrainedModel`):
            The tokenizer to check.
        recorded (`dict[str, str]`, *optional*):
            What [`tokenizer_weights_hashes`] gave for the tokenizer the prior or token set was made with.
    """
    if not recorded:
        return None
    dtype = held_dtype(tokenizer)
    if dtype not in recorded:
        dtype = "float32"
    received = tokenizer_weights_hashes(tokenizer, (dtype,))[dtype]
    return None if received == recorded.get(dtype) else (received, recorded.get(dtype))


def tokenizer_name(tokenizer) -> str:
    """The folder or Hub id a tokenizer was loaded from, for messages (`"given"` when built in memory)."""
    return getattr(tokenizer, "name_or_path", None) or "given"


def _digest(tensors: dict[str, Any], dtype: str) -> str:
    import torch

    target = getattr(torch, dtype)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        if tensor.is_floating_point():
            tensor = tensor.to(target)
        tensor = tensor.to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensors[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


__all__ = [
    "DECODER_MODULES",
    "IDENTITY_DTYPES",
    "held_dtype",
    "identity_tensors",
    "tokenizer_config_hash",
    "tokenizer_name",
    "tokenizer_weights_hashes",
    "weights_hash_differs",
]
