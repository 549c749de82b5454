"""LlamaGen's class-conditional GPTs (`autoregressive/models/gpt.py`, MIT) as [`VQPriorForCausalLM`] with
`position_embedding="rope2d"`: the weights map onto transformers' Llama one to one, after three changes.

- The fused `attention.wqkv` splits into `q_proj`, `k_proj`, `v_proj`; LlamaGen rotates interleaved pairs
  `(x[2j], x[2j+1])` and Llama pairs `(x[j], x[j + d/2])`, so the rows of q and k are permuted per head (index
  `2j + e` moves to `e * d/2 + j`). Attention scores are unchanged: q and k move together, and v is not touched.
- LlamaGen embeds image ids (`tok_embeddings`, V rows) and classes (`cls_embedding.embedding_table`, 1000 classes +
  the null row) in two tables; hf-vq's joint vocabulary is `[image ids, classes, null]`, so `embed_tokens` is the two
  stacked, and the output head (`output`, V rows) is padded with zero rows for the classes and the null token, which
  the sampler never emits (it masks them to -inf).
- LlamaGen's 2-D rotary table (`freqs_cis`, kept in some checkpoints) is derived, not learned: `rope2d.py` computes
  the same one and the key is dropped.

Names: `layers.{i}.attention_norm` -> `model.layers.{i}.input_layernorm`, `ffn_norm` -> `post_attention_layernorm`,
`attention.wo` -> `self_attn.o_proj`, `feed_forward.{w1,w3,w2}` -> `mlp.{gate,up,down}_proj`, `norm` -> `model.norm`.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..modeling.configuration_prior import VQPriorConfig
from ..modeling.modeling_prior import VQPriorForCausalLM

# LlamaGen's class-conditional sizes (`GPT_models` in gpt.py): layers, heads, width.
GPT_MODELS: dict[str, dict[str, int]] = {
    "GPT-B": {"n_layer": 12, "n_head": 12, "dim": 768},
    "GPT-L": {"n_layer": 24, "n_head": 16, "dim": 1024},
    "GPT-XL": {"n_layer": 36, "n_head": 20, "dim": 1280},
    "GPT-XXL": {"n_layer": 48, "n_head": 24, "dim": 1536},
    "GPT-3B": {"n_layer": 24, "n_head": 32, "dim": 3200},
}
# ModelArgs defaults the converted config must keep.
GPT_DEFAULTS = {"n_kv_head": None, "rope_base": 10000.0, "norm_eps": 1e-5, "class_dropout_prob": 0.1}

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_LAYER_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}
_DERIVED_KEYS = ("freqs_cis",)
_TOP_LEVEL_KEYS = ("tok_embeddings.weight", "cls_embedding.embedding_table.weight", "output.weight", "norm.weight")
_TOP_LEVEL_KEYS += _DERIVED_KEYS


def gpt_spec(gpt_model: str | dict[str, Any]) -> dict[str, Any]:
    """LlamaGen's `ModelArgs` fields of a named size (`"GPT-B"`...), or of a dict of them (a custom size, e.g.
    `{**GPT_MODELS["GPT-XL"], "n_layer": 2}`), with LlamaGen's defaults filled in."""
    if isinstance(gpt_model, str):
        if gpt_model not in GPT_MODELS:
            raise ValueError(
                f"`gpt_model` must be one of LlamaGen's class-conditional sizes {list(GPT_MODELS)}; got "
                f"{gpt_model!r}. Pass the --gpt-model the checkpoint was trained with."
            )
        return {**GPT_DEFAULTS, **GPT_MODELS[gpt_model], "name": gpt_model}
    missing = [k for k in ("n_layer", "n_head", "dim") if k not in gpt_model]
    if missing:
        raise ValueError(f"A custom GPT size needs `n_layer`, `n_head` and `dim`; {missing} are missing.")
    return {**GPT_DEFAULTS, "name": "custom", **gpt_model}


def describe_gpt_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What a LlamaGen GPT state dict says about itself: width, layers, image vocabulary, classes, FFN width; and the
    named sizes that fit (the head count is not in the shapes)."""
    table = state_dict.get("cls_embedding.embedding_table.weight")
    tokens = state_dict.get("tok_embeddings.weight")
    layers = {int(m.group(1)) for m in map(_LAYER.match, state_dict) if m}
    ffn = state_dict.get("layers.0.feed_forward.w1.weight")
    found = {
        "dim": None if tokens is None else tokens.shape[1],
        "n_layer": len(layers),
        "vocab_size": None if tokens is None else tokens.shape[0],
        "class_rows": None if table is None else table.shape[0],
        "intermediate_size": None if ffn is None else ffn.shape[0],
    }
    found["fits"] = [
        name for name, spec in GPT_MODELS.items() if (spec["dim"], spec["n_layer"]) == (found["dim"], found["n_layer"])
    ]
    return found


def check_gpt_state_dict(state_dict: dict[str, torch.Tensor], spec: dict[str, Any], source: str) -> None:
    """Raises one paragraph naming the mismatch when `state_dict` is not a LlamaGen class-conditional GPT of `spec`."""
    if any(k.startswith("cls_embedding.cap_proj.") for k in state_dict):
        raise ValueError(
            f"{source} is a text-conditional LlamaGen GPT (it has `cls_embedding.cap_proj.*`); hf-vq converts the "
            "class-conditional (c2i) ones. Use a c2i checkpoint (c2i_B_256.pt, c2i_L_384.pt, ...)."
        )
    found = describe_gpt_state_dict(state_dict)
    needed = ["tok_embeddings.weight", "cls_embedding.embedding_table.weight", "norm.weight", "output.weight"]
    absent = [k for k in needed if k not in state_dict]
    if absent or not found["n_layer"]:
        sample = sorted(state_dict)[:6]
        raise ValueError(
            f"{source} is not a LlamaGen GPT checkpoint: expected `tok_embeddings.weight`, "
            f"`cls_embedding.embedding_table.weight`, `layers.{{i}}.attention.wqkv.weight`, `norm.weight` and "
            f"`output.weight`; {absent or 'no layers.*'} missing (its keys begin {sample}). Pass the GPT checkpoint "
            "written by LlamaGen's train_c2i.py (or its released c2i_*.pt) as --gpt."
        )
    if (found["dim"], found["n_layer"]) != (spec["dim"], spec["n_layer"]):
        fits = f"--gpt-model {found['fits'][0]}" if found["fits"] else "no named size (a custom one)"
        raise ValueError(
            f"{source} is not a LlamaGen {spec['name']}: {spec['name']} has width {spec['dim']} and {spec['n_layer']} "
            f"layers, the checkpoint width {found['dim']} and {found['n_layer']} layers "
            f"(`tok_embeddings.weight` {tuple(state_dict['tok_embeddings.weight'].shape)}). It fits {fits}."
        )
    if spec["dim"] % spec["n_head"]:
        raise ValueError(f"width {spec['dim']} is not divisible by n_head = {spec['n_head']}; check the GPT size.")


def llamagen_prior_config(
    state_dict: dict[str, torch.Tensor], tokenizer, spec: dict[str, Any], image_size: int, **fields: Any
) -> VQPriorConfig:
    """The [`VQPriorConfig`] of a LlamaGen GPT of size `spec` over `tokenizer`'s ids for `image_size`-px images."""
    found = describe_gpt_state_dict(state_dict)
    codebook = tokenizer.token_layout.vocabulary_size
    if found["vocab_size"] != codebook:
        raise ValueError(
            f"The GPT predicts {found['vocab_size']} image ids (`tok_embeddings.weight` rows) but the tokenizer has "
            f"{codebook} codes. Convert with the tokenizer the GPT was trained on (or pass its --codebook-size)."
        )
    head_dim = spec["dim"] // spec["n_head"]
    n_kv_head = spec["n_kv_head"] or spec["n_head"]
    wqkv = state_dict["layers.0.attention.wqkv.weight"]
    if wqkv.shape[0] != (spec["n_head"] + 2 * n_kv_head) * head_dim:
        raise ValueError(
            f"`layers.0.attention.wqkv.weight` has {wqkv.shape[0]} rows; {spec['n_head']} query heads and {n_kv_head} "
            f"key/value heads of size {head_dim} need {(spec['n_head'] + 2 * n_kv_head) * head_dim}. Check "
            "--gpt-model."
        )
    # LabelEmbedder keeps a null row (index num_classes) whenever it was trained with class dropout, as all are.
    num_classes = found["class_rows"] - 1
    return VQPriorConfig.from_tokenizer(
        tokenizer,
        image_size=image_size,
        num_classes=num_classes,
        class_dropout_prob=spec["class_dropout_prob"],
        position_embedding="rope2d",
        hidden_size=spec["dim"],
        intermediate_size=found["intermediate_size"],
        num_hidden_layers=spec["n_layer"],
        num_attention_heads=spec["n_head"],
        num_key_value_heads=n_kv_head,
        head_dim=head_dim,
        rms_norm_eps=spec["norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": float(spec["rope_base"])},
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        **fields,
    )


def interleaved_to_half(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rows of a q or k projection `(heads * d, in)`: from LlamaGen's interleaved rotary pairs to Llama's halves
    (row `2j + e` of each head moves to `e * d/2 + j`)."""
    rows, columns = weight.shape
    head_dim = rows // num_heads
    return weight.reshape(num_heads, head_dim // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


def convert_gpt_state_dict(state_dict: dict[str, torch.Tensor], config: VQPriorConfig) -> dict[str, torch.Tensor]:
    """LlamaGen GPT weights -> [`VQPriorForCausalLM`] names and shapes (see the module docstring)."""
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = config.hidden_size // heads
    converted, unknown = {}, []
    tokens = state_dict["tok_embeddings.weight"]
    classes = state_dict["cls_embedding.embedding_table.weight"]
    converted["model.embed_tokens.weight"] = torch.cat([tokens, classes.to(tokens.dtype)])
    output = state_dict["output.weight"]
    padding = output.new_zeros(config.vocab_size - output.shape[0], output.shape[1])
    converted["lm_head.weight"] = torch.cat([output, padding])
    converted["model.norm.weight"] = state_dict["norm.weight"]
    for key, value in state_dict.items():
        match = _LAYER.match(key)
        if match is None:
            if key not in _TOP_LEVEL_KEYS:
                unknown.append(key)
            continue
        layer, name = f"model.layers.{match.group(1)}", match.group(2)
        if name == "attention.wqkv.weight":
            q, k, v = value.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim])
            converted[f"{layer}.self_attn.q_proj.weight"] = interleaved_to_half(q, heads)
            converted[f"{layer}.self_attn.k_proj.weight"] = interleaved_to_half(k, kv_heads)
            converted[f"{layer}.self_attn.v_proj.weight"] = v
        elif name in _LAYER_NAMES:
            converted[f"{layer}.{_LAYER_NAMES[name]}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"Unknown LlamaGen GPT weights: {len(unknown)} keys are not those of a class-conditional Transformer "
            f"(gpt.py), e.g. {unknown[:6]}. Convert a c2i checkpoint of LlamaGen's own code."
        )
    return converted


def convert_llamagen_gpt(
    state_dict: dict[str, torch.Tensor],
    tokenizer,
    gpt_model: str | dict[str, Any] = "GPT-B",
    image_size: int = 256,
    source: str = "the GPT checkpoint",
    **fields: Any,
) -> VQPriorForCausalLM:
    """A LlamaGen class-conditional GPT state dict as a [`VQPriorForCausalLM`] over `tokenizer`'s ids, in eval mode.

    Args:
        state_dict (`dict[str, torch.Tensor]`):
            The GPT's weights in LlamaGen's names (what `Transformer.state_dict()` returns).
        tokenizer ([`VQGANModel`]):
            The converted LlamaGen tokenizer the GPT models (`convert_llamagen_tokenizer`).
        gpt_model (`str` or `dict`, *optional*, defaults to `"GPT-B"`):
            LlamaGen's size name (`GPT_MODELS`), or a dict of its `ModelArgs` fields for a custom size.
        image_size (`int`, *optional*, defaults to 256):
            Side of the generated images: 256 (16x16 ids with VQ-16) or 384 (24x24).
        source (`str`, *optional*):
            How error messages name the checkpoint.
        fields:
            Further [`VQPriorConfig`] fields (`id2label`, `tokenizer_name_or_path`, ...).
    """
    spec = gpt_spec(gpt_model)
    check_gpt_state_dict(state_dict, spec, source)
    config = llamagen_prior_config(state_dict, tokenizer, spec, image_size, **fields)
    converted = convert_gpt_state_dict(state_dict, config)
    with torch.device("meta"):  # no random init of weights that are all replaced (seconds for GPT-3B)
        model = VQPriorForCausalLM(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or wrong:
        raise ValueError(
            f"{source} does not match a LlamaGen {spec['name']} for {image_size}-px images: missing {missing[:4]}, "
            f"shapes differ {wrong[:4]}. Check --gpt-model."
        )
    model.load_state_dict({k: v.contiguous() for k, v in converted.items()}, strict=True, assign=True)
    return model.eval()


__all__ = [
    "GPT_MODELS",
    "check_gpt_state_dict",
    "convert_gpt_state_dict",
    "convert_llamagen_gpt",
    "describe_gpt_state_dict",
    "gpt_spec",
    "interleaved_to_half",
    "llamagen_prior_config",
]
