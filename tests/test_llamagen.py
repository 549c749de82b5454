"""Converting LlamaGen checkpoints (`hf-vq convert llamagen`), checked without LlamaGen's code: the tests write tiny
checkpoints in LlamaGen's key layout and shapes (trainer `args` Namespace included) and compare the converted models
with reference forwards written here from the formulas: for the GPT, RMSNorm, 2-D RoPE on interleaved pairs (row
pairs then column pairs, frequencies over head_dim / 2, the class slot unrotated to zero), causal attention and
SwiGLU; for the tokenizer, taming's conv net on l2-normalised 8-dim codes. `benchmarks/llamagen_parity.py` does the
same against LlamaGen's own modules at every published size."""

import argparse
import copy
import fractions
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hf_vq.cli import main as cli_main
from hf_vq.integrations import llamagen, llamagen_gpt
from hf_vq.integrations.llamagen import (
    check_trainer_args,
    convert_llamagen,
    imagenet_class_names,
    load_llamagen_checkpoint,
)
from hf_vq.integrations.llamagen_gpt import convert_llamagen_gpt
from hf_vq.modeling import VQPriorConfig
from hf_vq.modeling.rope2d import Rope2DEmbedding, grid_positions
from hf_vq.pipelines import VQImagePipeline

# Tiny sizes in LlamaGen's layout: GroupNorm(32) needs widths % 32 == 0; SwiGLU width: find_multiple(8 dim / 3, 256).
VQ = {"ch": 32, "ch_mult": [1, 2], "z_channels": 16, "num_res_blocks": 1}
CODES, CODE_DIM, IMAGE, GRID = 16, 8, 8, 4
GPT = {"dim": 32, "n_layer": 2, "n_head": 2}
FFN, CLASSES = 256, 1000


# ---------------------------------------------------------------------------------------------- tiny checkpoints


def _conv(out_c, in_c, k=3):
    return {"weight": torch.randn(out_c, in_c, k, k) / math.sqrt(in_c * k * k), "bias": torch.randn(out_c) * 0.1}


def _norm(c):
    return {"weight": 1 + 0.1 * torch.randn(c), "bias": 0.1 * torch.randn(c)}


def _put(sd, prefix, params):
    sd.update({f"{prefix}.{k}": v for k, v in params.items()})


def _resnet(sd, prefix, cin, cout):
    _put(sd, f"{prefix}.norm1", _norm(cin))
    _put(sd, f"{prefix}.conv1", _conv(cout, cin))
    _put(sd, f"{prefix}.norm2", _norm(cout))
    _put(sd, f"{prefix}.conv2", _conv(cout, cout))
    if cin != cout:
        _put(sd, f"{prefix}.nin_shortcut", _conv(cout, cin, 1))


def _attn(sd, prefix, c):
    _put(sd, f"{prefix}.norm", _norm(c))
    for name in ("q", "k", "v", "proj_out"):
        _put(sd, f"{prefix}.{name}", _conv(c, c, 1))


def vq_state_dict():
    """LlamaGen's `VQModel.state_dict()` keys and shapes for `VQ` (vq_model.py's Encoder / Decoder layout)."""
    sd, ch, mult, z, blocks = {}, VQ["ch"], VQ["ch_mult"], VQ["z_channels"], VQ["num_res_blocks"]
    levels = len(mult)
    _put(sd, "encoder.conv_in", _conv(ch, 3))
    cin = ch
    for i, m in enumerate(mult):
        for j in range(blocks):
            _resnet(sd, f"encoder.conv_blocks.{i}.res.{j}", cin, ch * m)
            cin = ch * m
            if i == levels - 1:
                _attn(sd, f"encoder.conv_blocks.{i}.attn.{j}", cin)
        if i != levels - 1:
            _put(sd, f"encoder.conv_blocks.{i}.downsample.conv", _conv(cin, cin))
    for side in ("encoder", "decoder"):
        c = ch * mult[-1]
        _resnet(sd, f"{side}.mid.0", c, c)
        _attn(sd, f"{side}.mid.1", c)
        _resnet(sd, f"{side}.mid.2", c, c)
    _put(sd, "encoder.norm_out", _norm(cin))
    _put(sd, "encoder.conv_out", _conv(z, cin))
    _put(sd, "decoder.conv_in", _conv(ch * mult[-1], z))
    cin = ch * mult[-1]
    for n, i in enumerate(reversed(range(levels))):  # conv_blocks run from the lowest resolution
        for j in range(blocks + 1):
            _resnet(sd, f"decoder.conv_blocks.{n}.res.{j}", cin, ch * mult[i])
            cin = ch * mult[i]
            if i == levels - 1:
                _attn(sd, f"decoder.conv_blocks.{n}.attn.{j}", cin)
        if i != 0:
            _put(sd, f"decoder.conv_blocks.{n}.upsample.conv", _conv(cin, cin))
    _put(sd, "decoder.norm_out", _norm(cin))
    _put(sd, "decoder.conv_out", _conv(3, cin))
    _put(sd, "quant_conv", _conv(CODE_DIM, z, 1))
    _put(sd, "post_quant_conv", _conv(z, CODE_DIM, 1))
    sd["quantize.embedding.weight"] = torch.randn(CODES, CODE_DIM)
    sd["quantize.codebook_used"] = torch.zeros(65536)
    return sd


def gpt_state_dict():
    """LlamaGen's c2i `Transformer.state_dict()` keys and shapes for `GPT` (gpt.py), `freqs_cis` included."""
    d, std = GPT["dim"], 0.2
    sd = {
        "cls_embedding.embedding_table.weight": torch.randn(CLASSES + 1, d),
        "tok_embeddings.weight": torch.randn(CODES, d),
        "norm.weight": 1 + 0.1 * torch.randn(d),
        "output.weight": torch.randn(CODES, d) * std,
        "freqs_cis": torch.zeros(1 + GRID * GRID, d // GPT["n_head"] // 2, 2),
    }
    for i in range(GPT["n_layer"]):
        p = f"layers.{i}"
        sd[f"{p}.attention.wqkv.weight"] = torch.randn(3 * d, d) * std
        sd[f"{p}.attention.wo.weight"] = torch.randn(d, d) * std
        sd[f"{p}.feed_forward.w1.weight"] = torch.randn(FFN, d) * std
        sd[f"{p}.feed_forward.w3.weight"] = torch.randn(FFN, d) * std
        sd[f"{p}.feed_forward.w2.weight"] = torch.randn(d, FFN) * std
        sd[f"{p}.attention_norm.weight"] = 1 + 0.1 * torch.randn(d)
        sd[f"{p}.ffn_norm.weight"] = 1 + 0.1 * torch.randn(d)
    return sd


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("llamagen")
    vq, gpt = vq_state_dict(), gpt_state_dict()
    trainer_args = argparse.Namespace(gpt_model="GPT-B", image_size=IMAGE, downsample_size=2, gpt_type="c2i")
    torch.save({"model": vq, "steps": 10, "args": argparse.Namespace(vq_model="VQ-16")}, root / "vq.pt")
    torch.save({"model": gpt, "optimizer": {"state": {}, "param_groups": []}, "args": trainer_args}, root / "gpt.pt")
    return {"root": root, "vq": vq, "gpt": gpt}


@pytest.fixture(scope="module")
def pipe(checkpoints):
    root = checkpoints["root"]
    return convert_llamagen(root / "vq.pt", None, root / "gpt.pt", GPT, IMAGE, VQ, CODES, CODE_DIM)


# ---------------------------------------------------------------------------------------------- reference forwards


def rms_norm(x, weight, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_2d_interleaved(x, grid):
    """x: (B, T, H, d), T = 1 + grid²: pair (x[2j], x[2j+1]) turns by row * f_j for j < d/4, by column * f_{j-d/4}
    after; f_i = 10000^(-2i / (d/2)); the class slot (t = 0) gets cos = sin = 0."""
    d = x.shape[-1]
    freqs = 10000.0 ** (-torch.arange(0, d // 2, 2).float() / (d // 2))
    t = torch.arange(grid * grid)
    angles = torch.cat([(t // grid)[:, None] * freqs, (t % grid)[:, None] * freqs], dim=-1)  # (L, d/2)
    cos = torch.cat([torch.zeros(1, d // 2), angles.cos()])[None, : x.shape[1], None]
    sin = torch.cat([torch.zeros(1, d // 2), angles.sin()])[None, : x.shape[1], None]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2)


def reference_logits(sd, ids, labels):
    """LlamaGen's Transformer.forward(ids, labels) in eval mode, from the formulas: (B, 1 + L, V)."""
    d, heads = GPT["dim"], GPT["n_head"]
    h = torch.cat([sd["cls_embedding.embedding_table.weight"][labels][:, None], sd["tok_embeddings.weight"][ids]], 1)
    b, t, _ = h.shape
    for i in range(GPT["n_layer"]):
        p = f"layers.{i}"
        x = rms_norm(h, sd[f"{p}.attention_norm.weight"])
        q, k, v = (x @ sd[f"{p}.attention.wqkv.weight"].T).split(d, dim=-1)
        q, k, v = (y.reshape(b, t, heads, d // heads) for y in (q, k, v))
        q, k = rope_2d_interleaved(q, GRID), rope_2d_interleaved(k, GRID)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // heads)
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), -math.inf)
        attended = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(b, t, d)
        h = h + attended @ sd[f"{p}.attention.wo.weight"].T
        x = rms_norm(h, sd[f"{p}.ffn_norm.weight"])
        gate, up = x @ sd[f"{p}.feed_forward.w1.weight"].T, x @ sd[f"{p}.feed_forward.w3.weight"].T
        h = h + (F.silu(gate) * up) @ sd[f"{p}.feed_forward.w2.weight"].T
    return rms_norm(h, sd["norm.weight"]) @ sd["output.weight"].T


def reference_sample(sd, labels, cfg, top_k=0, temperature=1.0, cfg_interval=-1, generator=None):
    """LlamaGen's generate(): raw logits mixed as uncond + (cond - uncond) * cfg, then / temperature, top-k,
    softmax, and a multinomial draw (or argmax when `generator` is None); guidance off after step cfg_interval."""
    ids = torch.empty(len(labels), 0, dtype=torch.long)
    null = torch.full_like(labels, CLASSES)
    for step in range(GRID * GRID):
        cond = reference_logits(sd, ids, labels)[:, -1]
        logits = cond
        if not (cfg_interval > -1 and step - 1 > cfg_interval):
            uncond = reference_logits(sd, ids, null)[:, -1]
            logits = uncond + (cond - uncond) * cfg
        logits = logits / max(temperature, 1e-5)
        if top_k:
            logits = logits.masked_fill(logits < logits.topk(top_k).values[:, -1:], -math.inf)
        if generator is None:
            token = logits.argmax(-1)
        else:
            # Over the joint vocabulary's length (class and null ids at 0): the draw then reads the generator as
            # hf-vq's does, so equal distributions give equal tokens.
            probs = F.pad(logits.softmax(-1), (0, CLASSES + 1))
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]
        ids = torch.cat([ids, token[:, None]], 1)
    return ids.reshape(-1, GRID, GRID)


def reference_vq(sd, images):
    """LlamaGen's VQModel.encode ids and decode_code pixels, from the formulas (taming's blocks, unit-norm codes)."""

    def conv(x, name, stride=1, pad=1):
        w = sd[f"{name}.weight"]
        return F.conv2d(x, w, sd[f"{name}.bias"], stride=stride, padding=pad if w.shape[-1] == 3 else 0)

    def norm(x, name):
        return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)

    def resnet(x, name):
        h = conv(F.silu(norm(x, f"{name}.norm1")), f"{name}.conv1")
        h = conv(F.silu(norm(h, f"{name}.norm2")), f"{name}.conv2")
        return (conv(x, f"{name}.nin_shortcut") if f"{name}.nin_shortcut.weight" in sd else x) + h

    def attn(x, name):
        h = norm(x, f"{name}.norm")
        q, k, v = (conv(h, f"{name}.{n}").flatten(2) for n in "qkv")  # (B, C, HW)
        w = (q.transpose(1, 2) @ k / math.sqrt(x.shape[1])).softmax(-1)  # (B, HW, HW)
        return x + conv((v @ w.transpose(1, 2)).reshape(x.shape), f"{name}.proj_out")

    def blocks(x, side, levels, per_level, resample):
        for i in range(levels):
            for j in range(per_level):
                x = resnet(x, f"{side}.conv_blocks.{i}.res.{j}")
                if f"{side}.conv_blocks.{i}.attn.{j}.q.weight" in sd:
                    x = attn(x, f"{side}.conv_blocks.{i}.attn.{j}")
            x = resample(x, i)
        return x

    def mid(x, side):
        return resnet(attn(resnet(x, f"{side}.mid.0"), f"{side}.mid.1"), f"{side}.mid.2")

    levels, n = len(VQ["ch_mult"]), VQ["num_res_blocks"]

    def down(x, i):
        return x if i == levels - 1 else conv(F.pad(x, (0, 1, 0, 1)), f"encoder.conv_blocks.{i}.downsample.conv", 2, 0)

    def up(x, i):
        return (
            x
            if i == levels - 1
            else conv(F.interpolate(x, scale_factor=2.0), f"decoder.conv_blocks.{i}.upsample.conv")
        )

    h = blocks(conv(images, "encoder.conv_in"), "encoder", levels, n, down)
    h = conv(F.silu(norm(mid(h, "encoder"), "encoder.norm_out")), "encoder.conv_out")
    z = F.normalize(conv(h, "quant_conv").permute(0, 2, 3, 1), dim=-1)
    codes = F.normalize(sd["quantize.embedding.weight"], dim=-1)
    ids = torch.cdist(z.flatten(0, 2), codes).argmin(-1).reshape(z.shape[:3])
    h = conv(codes[ids].permute(0, 3, 1, 2), "post_quant_conv")
    h = blocks(mid(conv(h, "decoder.conv_in"), "decoder"), "decoder", levels, n + 1, up)
    return ids, conv(F.silu(norm(h, "decoder.norm_out")), "decoder.conv_out")


# ---------------------------------------------------------------------------------------------- the prior


def test_logits_equal_llamagen_forward_and_the_vocabulary_is_joint(pipe, checkpoints):
    sd, prior = checkpoints["gpt"], pipe.transformer
    ids, labels = torch.randint(0, CODES, (3, GRID * GRID)), torch.tensor([0, 207, CLASSES])  # CLASSES: the null row
    expected = reference_logits(sd, ids, labels)
    with torch.no_grad():
        logits = prior(input_ids=torch.cat([(labels + CODES)[:, None], ids], 1)).logits
    assert logits.shape == (3, 1 + GRID * GRID, CODES + CLASSES + 1)
    torch.testing.assert_close(logits[..., :CODES], expected, atol=1e-5, rtol=1e-5)
    assert not logits[..., CODES:].any()  # the padded head: classes and null are never predicted
    assert prior.config.position_embedding == "rope2d" and prior.config.null_class_token_id == CODES + CLASSES
    assert prior.config.intermediate_size == FFN and prior.config.num_classes == CLASSES


@pytest.mark.parametrize("cfg_interval", [-1, 2])
def test_greedy_guided_tokens_equal_llamagen(pipe, checkpoints, cfg_interval):
    labels = torch.tensor([207, 3])
    expected = reference_sample(checkpoints["gpt"], labels, cfg=4.0, cfg_interval=cfg_interval)
    tokens = pipe.transformer.generate_indices(
        class_labels=labels, guidance_scale=4.0, temperature=0, cfg_interval=cfg_interval
    )
    assert torch.equal(tokens, expected)
    unguided = pipe.transformer.generate_indices(class_labels=labels, guidance_scale=1.0, temperature=0)
    assert not torch.equal(unguided, expected)  # guidance changes the tokens, so the equality above says something


def test_guided_sampling_draws_llamagens_distribution(pipe, checkpoints):
    """hf-vq mixes log-softmaxes and LlamaGen raw logits, which differ per row by a constant; with temperature
    and top-k in LlamaGen's order the two distributions are equal, so one seeded draw gives the same tokens."""
    labels = torch.tensor([1, 2, 3])
    options = {"top_k": 5, "temperature": 0.7}
    expected = reference_sample(checkpoints["gpt"], labels, 4.0, generator=torch.Generator().manual_seed(1), **options)
    tokens = pipe.transformer.generate_indices(
        class_labels=labels, guidance_scale=4.0, generator=torch.Generator().manual_seed(1), **options
    )
    assert torch.equal(tokens, expected)


def test_bf16_sampling(pipe):
    prior = pipe.transformer.to(torch.bfloat16)
    try:
        tokens = prior.generate_indices(class_labels=[5], num_images=2, guidance_scale=4.0, top_k=8)
    finally:
        prior.to(torch.float32)
    assert tokens.shape == (2, GRID, GRID) and tokens.min() >= 0 and tokens.max() < CODES


def test_rope2d_rows_columns_and_class_slot():
    levels = [{"name": "top", "downsampling_factor": 4, "codebook_size": 8}]
    levels.append({"name": "bottom", "downsampling_factor": 2, "codebook_size": 8, "depth": 2})
    config = VQPriorConfig(
        token_levels=levels, image_size=8, hidden_size=32, num_attention_heads=2, position_embedding="rope2d"
    )
    rows, cols = grid_positions(config.token_layout, config.image_size)
    # top 2x2 in finest (4x4) units, then the bottom grid with its two stages sharing a position
    assert rows.tolist()[:4] == [0, 0, 2, 2] and cols.tolist()[:4] == [0, 2, 0, 2]
    assert rows.tolist()[4:12] == [0] * 8 and cols.tolist()[4:12] == [0, 0, 1, 1, 2, 2, 3, 3]
    cos, sin = Rope2DEmbedding(config)(torch.zeros(1), torch.arange(1 + 4 + 32)[None])
    assert not cos[0, 0].any() and not sin[0, 0].any()
    assert torch.allclose(cos[0, 1], torch.ones(16))  # row 0, column 0: no turn
    row_angles = 2 * 10000.0 ** (-torch.arange(4) / 4)  # position 3: the top grid's (row 2, column 0)
    assert torch.allclose(sin[0, 3], torch.cat([row_angles.sin(), torch.zeros(4)] * 2))
    with pytest.raises(ValueError, match="1-D token levels"):
        VQPriorConfig(token_levels=[{"name": "t", "length": 8, "codebook_size": 8}], position_embedding="rope2d")


# ---------------------------------------------------------------------------------------------- the tokenizer


def test_tokenizer_ids_and_pixels_equal_llamagen_and_export_to_diffusers(pipe, checkpoints):
    images = torch.rand(2, 3, IMAGE, IMAGE) * 2 - 1
    ids, pixels = reference_vq(checkpoints["vq"], images)
    tokenizer = pipe.vqvae
    with torch.no_grad():
        assert torch.equal(tokenizer.encode_to_indices(images), ids)
        torch.testing.assert_close(tokenizer.decode_indices(ids), pixels, atol=1e-5, rtol=1e-5)
        exported = tokenizer.to_diffusers()
        codes = exported.quantize.embedding.weight[ids].permute(0, 3, 1, 2)
        torch.testing.assert_close(
            exported.decode(codes, force_not_quantize=True).sample, pixels, atol=1e-5, rtol=1e-5
        )
    assert tokenizer.config.codebook_l2_norm and tokenizer.config.vq_embed_dim == CODE_DIM


def test_tokenizer_conversion_is_exact_in_float64(pipe, checkpoints):
    """In fp32 two implementations of the same decoder differ by their sums' rounding (each of LlamaGen's and hf-vq's
    fp32 decoders is ~3e-5 from LlamaGen's fp64 one on 256-px outputs: `benchmarks/llamagen_parity.py`); in float64
    what is left must be rounding of the order of 1e-14. A float64 model keeps float64 codes (fp16/bf16 go to fp32)."""
    images = torch.rand(2, 3, IMAGE, IMAGE, dtype=torch.float64) * 2 - 1
    ids, pixels = reference_vq({k: v.double() for k, v in checkpoints["vq"].items()}, images)
    tokenizer = copy.deepcopy(pipe.vqvae).double()
    with torch.no_grad():
        assert tokenizer.quantize.codebook().dtype == torch.float64
        assert torch.equal(tokenizer.encode_to_indices(images), ids)
        torch.testing.assert_close(tokenizer.decode_indices(ids), pixels, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------- files and errors


@pytest.mark.parametrize("layout", ["module", "state_dict", "bare"])
def test_checkpoint_layouts(checkpoints, tmp_path, layout):
    sd = {f"_orig_mod.{k}": v for k, v in checkpoints["gpt"].items()}  # torch.compile's prefix is stripped too
    torch.save(sd if layout == "bare" else {layout: sd}, tmp_path / "gpt.pt")
    loaded = load_llamagen_checkpoint(tmp_path / "gpt.pt")
    assert loaded.args is None and torch.equal(loaded.state_dict["norm.weight"], checkpoints["gpt"]["norm.weight"])
    assert load_llamagen_checkpoint(checkpoints["root"] / "gpt.pt").args["gpt_model"] == "GPT-B"  # the Namespace


def test_refuses_pickled_objects_and_names_the_mismatch(pipe, checkpoints, tmp_path):
    root, tokenizer = checkpoints["root"], pipe.vqvae
    torch.save({"model": checkpoints["gpt"], "args": fractions.Fraction(1, 3)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="does not unpickle"):
        load_llamagen_checkpoint(tmp_path / "evil.pt")
    args = load_llamagen_checkpoint(root / "gpt.pt").args
    with pytest.raises(ValueError, match=r"trained with --gpt-model GPT-B \(given GPT-L\)"):  # its recorded args
        check_trainer_args(args, "GPT-L", IMAGE, tokenizer)
    with pytest.raises(ValueError, match=r"trained with --image-size 8 \(given 16\)"):
        check_trainer_args(args, GPT, 16, tokenizer)
    with pytest.raises(ValueError, match=r"not a LlamaGen GPT-L: .* width 32 and 2 layers"):  # no args: the shapes
        convert_llamagen_gpt(checkpoints["gpt"], tokenizer, "GPT-L", IMAGE)
    with pytest.raises(ValueError, match="is not a LlamaGen GPT checkpoint"):
        convert_llamagen_gpt(checkpoints["vq"], tokenizer, GPT, IMAGE)
    with pytest.raises(ValueError, match=r"not a LlamaGen VQ-8 .* 2 encoder levels .* --codebook-size 16"):
        convert_llamagen(root / "vq.pt", vq_model="VQ-8", codebook_size=CODES)


def test_cli_converts_a_pipeline_that_samples_by_class_name(checkpoints, tmp_path, monkeypatch):
    # The named sizes, shrunk: the CLI converts "GPT-B" / "VQ-16" exactly as it would the real ones.
    monkeypatch.setitem(llamagen_gpt.GPT_MODELS, "GPT-B", GPT)
    monkeypatch.setitem(llamagen.VQ_MODELS, "VQ-16", VQ)
    root, out = checkpoints["root"], tmp_path / "llamagen-b"
    argv = ["convert", "llamagen", str(root / "vq.pt"), str(out), "--gpt", str(root / "gpt.pt")]
    assert cli_main([*argv, "--image-size", str(IMAGE), "--codebook-size", str(CODES)]) == 0
    assert not list(tmp_path.glob(".*tmp*"))  # written through a staging folder that is gone
    card = (out / "README.md").read_text()
    assert "license: mit" in card and "LlamaGen (Sun et al. 2024" in card and "golden retriever" in card
    config = json.loads((out / "transformer" / "config.json").read_text())
    assert config["id2label"]["207"] == "golden retriever" and config["position_embedding"] == "rope2d"
    pipe = VQImagePipeline.from_pretrained(out)
    images = pipe(class_labels=[207, "golden retriever"], guidance_scale=4.0, output_type="pt").images
    assert images.shape == (2, 3, IMAGE, IMAGE)
    # Returned smaller, as LlamaGen evaluates its 384-px models at 256 px: the same draw, bicubic-resized.
    small = IMAGE * 2 // 3
    generator = torch.Generator().manual_seed(0)
    resized = pipe(class_labels=[207], output_type="pt", output_size=small, generator=generator).images
    full = pipe(class_labels=[207], output_type="pt", generator=torch.Generator().manual_seed(0)).images
    expected = torch.nn.functional.interpolate(full, size=(small, small), mode="bicubic").clamp(0, 1)
    torch.testing.assert_close(resized, expected)
    argv = ["generate", str(out), "--class-label", "golden retriever", "207", "--num-images", "1", "--guidance-scale"]
    grid = tmp_path / "g.png"
    flags = ["4", "--top-k", "8", "--sampling-option", "cfg_interval=3", "--output-size", str(small), "--output"]
    assert cli_main([*argv, *flags, str(grid)]) == 0
    from PIL import Image

    assert Image.open(grid).size[0] == small  # one column (--num-images 1) of images at the smaller size


def test_imagenet_names():
    names = imagenet_class_names()
    assert len(set(names)) == 1000 and names[0] == "tench" and names[207] == "golden retriever"


def test_readme_llamagen_example_runs(pipe, tmp_path, monkeypatch):
    """The README's "LlamaGen checkpoints" Python block, on the tiny checkpoints converted where it looks."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## LlamaGen checkpoints\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    folder = re.search(r'from_pretrained\("([^"]+)"\)', code).group(1)
    pipe.save_pretrained(tmp_path / folder)  # a converted pipeline (the CLI test checks what the converter writes)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["images"]) == 2 and namespace["images"][0].size == (IMAGE, IMAGE)
