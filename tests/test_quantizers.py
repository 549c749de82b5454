"""The quantizer family: config validation, a property grid over the options, codebook health, EMA, k-means,
dead-code restarts, gradients of each estimator, save/load of the statistics, and every type through both models."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

from hf_vq import VQGANConfig, VQGANModel, VQVAEModel
from hf_vq.modeling.configuration_utils import LEGACY_QUANTIZER_FIELDS
from hf_vq.modeling.quantizer_fsq import FiniteScalarQuantizer
from hf_vq.modeling.quantizer_lfq import LookupFreeQuantizer
from hf_vq.modeling.quantizer_residual import ResidualVectorQuantizer
from hf_vq.modeling.quantizer_vq import rotate_onto
from hf_vq.modeling.quantizers import build_quantizer

from helpers import photo_batch, tiny_vqgan_config, tiny_vqvae_config


def photo_latents(dim: int = 4, batch: int = 2, size: int = 8) -> torch.Tensor:
    """Latent-like tensors (B, dim, size, size) made from real photos: a fixed random 1x1 mix of RGB patches."""
    pixels = photo_batch(size * 4, batch=batch)
    patches = F.pixel_unshuffle(pixels, 4)  # (B, 48, size, size)
    mix = torch.randn(dim, patches.shape[1], generator=torch.Generator().manual_seed(1)) / patches.shape[1] ** 0.5
    return torch.einsum("dc,bchw->bdhw", mix, patches)


tiny_vqgan, tiny_vqvae = tiny_vqgan_config, tiny_vqvae_config


# Quantizer option grid: each entry is a set of config fields (K = 16 unless the type fixes it).
OPTIONS = {
    "vq": {},
    "vq-ema": dict(codebook_update="ema"),
    "vq-kmeans-restart": dict(kmeans_init=True, dead_code_restart=True, codebook_usage_window=1),
    "vq-l2-lowdim": dict(codebook_l2_norm=True, codebook_dim=2),
    "vq-entropy": dict(entropy_loss_weight=0.1),
    "vq-rotation": dict(gradient_estimator="rotation"),
    "vq-everything": dict(
        codebook_update="ema",
        kmeans_init=True,
        dead_code_restart=True,
        codebook_l2_norm=True,
        codebook_dim=3,
        entropy_loss_weight=0.1,
        gradient_estimator="rotation",
    ),
    "fsq": dict(quantizer_type="fsq", fsq_levels=[4, 4]),
    "fsq-odd-levels": dict(quantizer_type="fsq", fsq_levels=[5, 3], num_vq_embeddings=15),
    "lfq": dict(quantizer_type="lfq", entropy_loss_weight=0.1),
    "residual_vq": dict(quantizer_type="residual_vq", num_quantizers=3, codebook_update="ema"),
}


def quantizer_for(options: dict, **overrides):
    return build_quantizer(**tiny_vqgan(**{**options, **overrides}).quantizer_kwargs())


def init_quantizer(quantizer):
    """What the model's `_init_weights` does for a quantizer built on its own."""
    for module in quantizer.modules():
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()
    quantizer.reset_parameters()
    return quantizer


# ----------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "fields, match",
    [
        (
            dict(quantizer_type="lfq", num_vq_embeddings=1000),
            "power of 2 for LFQ (one sign bit per channel); got 1000. Try 512 or 1024",
        ),
        (dict(quantizer_type="fsq"), "fsq_levels"),
        (dict(quantizer_type="fsq", fsq_levels=[8, 5, 5, 5]), "num_vq_embeddings=1000"),
        (dict(quantizer_type="fsq", fsq_levels=[4, 1], num_vq_embeddings=4), "levels >= 2"),
        (dict(quantizer_type="fsq", fsq_levels=[4, 4], codebook_update="ema"), "codebook_update"),
        (dict(quantizer_type="lfq", dead_code_restart=True), "dead_code_restart"),
        (dict(quantizer_type="lfq", codebook_dim=2), "codebook_dim"),
        (dict(num_quantizers=2), "residual_vq"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(codebook_usage_window=0), "codebook_usage_window"),
        (dict(entropy_loss_weight=-1.0), "entropy_loss_weight"),
        (dict(fsq_levels=[4, 4]), "fsq_levels"),
    ],
)
def test_config_validation_names_the_field_and_the_fix(fields, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        tiny_vqgan(**fields)


def test_unknown_quantizer_type_is_refused():
    with pytest.raises((ValueError, TypeError), match="quantizer_type"):
        tiny_vqgan(quantizer_type="kmeans")


def test_old_config_json_without_the_quantizer_fields_means_plain_vq(tmp_path):
    """A config.json written before the options existed keeps meaning plain VQ, whatever the new defaults are."""
    tiny_vqgan().save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    for name in LEGACY_QUANTIZER_FIELDS:
        stored.pop(name, None)
    (tmp_path / "config.json").write_text(json.dumps(stored))
    config = VQGANConfig.from_pretrained(tmp_path)
    for name, value in LEGACY_QUANTIZER_FIELDS.items():
        assert getattr(config, name) == value, name
    # an explicit field in the file or in kwargs still wins
    assert VQGANConfig.from_pretrained(tmp_path, codebook_l2_norm=True).codebook_l2_norm is True


def test_every_quantizer_field_is_written_to_config_json(tmp_path):
    config = tiny_vqgan(**OPTIONS["vq-everything"])
    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    for name in LEGACY_QUANTIZER_FIELDS:
        assert name in stored, name
    reloaded = VQGANConfig.from_pretrained(tmp_path)
    for name in LEGACY_QUANTIZER_FIELDS:
        assert getattr(reloaded, name) == getattr(config, name), name


# ----------------------------------------------------------------------------------------------------- property grid


@pytest.mark.parametrize("name", OPTIONS)
def test_property_grid(name):
    """Ids in [0, K); in eval the quantized latents are exactly the decoded ids; train mode runs and back-props."""
    quantizer = init_quantizer(quantizer_for(OPTIONS[name]))
    latents = photo_latents(dim=4)
    quantizer.train()
    trained = latents.clone().requires_grad_(True)
    output = quantizer(trained, return_dict=True)
    assert output.quantized.shape == latents.shape
    (output.loss + output.quantized.square().sum()).backward()
    assert torch.isfinite(trained.grad).all() and trained.grad.abs().sum() > 0

    quantizer.eval()
    with torch.no_grad():
        output = quantizer(latents, return_dict=True)
    depth = OPTIONS[name].get("num_quantizers")
    assert output.indices.shape == (2, 8, 8) + ((depth,) if depth else ())
    assert output.indices.dtype == torch.long
    assert int(output.indices.min()) >= 0 and int(output.indices.max()) < quantizer.codebook_size
    assert torch.equal(quantizer.indices_to_codes(output.indices), output.quantized)
    for field in ("loss", "codebook_loss", "commitment_loss", "entropy_loss", "perplexity", "codebook_usage"):
        value = getattr(output, field)
        assert value.dim() == 0 and torch.isfinite(value), field
    assert 0 <= float(output.running_usage) <= 1 and 0 <= int(output.dead_codes) <= quantizer.codebook_size * (
        depth or 1
    )
    # diffusers' tuple: (z_q, loss, (perplexity, None, indices))
    z_q, _loss, (_perplexity, _, indices) = quantizer(latents)
    assert torch.equal(indices, output.indices) and torch.equal(z_q, output.quantized)


@pytest.mark.parametrize("name", ["vq", "vq-l2-lowdim", "fsq", "lfq", "residual_vq"])
def test_bf16_autocast_gives_the_fp32_ids(name):
    quantizer = init_quantizer(quantizer_for(OPTIONS[name])).eval()
    latents = photo_latents(dim=4)
    with torch.no_grad():
        reference = quantizer(latents, return_dict=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = quantizer(latents, return_dict=True)
    assert torch.equal(reference.indices, autocast.indices)
    assert autocast.quantized.dtype == torch.float32


@pytest.mark.parametrize("name", ["vq", "vq-l2-lowdim", "fsq", "lfq", "residual_vq"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
def test_codes_come_back_in_the_layout_the_latents_came_in(name, grad):
    """Contiguous in, contiguous out (the convs after it then round as taming's and diffusers' do); channels-last
    in, channels-last out (a channels-last model stays on its fast path). Same values either way."""
    quantizer = init_quantizer(quantizer_for(OPTIONS[name])).eval()
    latents = photo_latents(dim=4).requires_grad_(grad)
    channels_last = latents.detach().contiguous(memory_format=torch.channels_last).requires_grad_(grad)
    plain, strided = quantizer(latents)[0], quantizer(channels_last)[0]
    assert plain.is_contiguous()
    assert strided.is_contiguous(memory_format=torch.channels_last) and not strided.is_contiguous()
    assert torch.equal(plain, strided)
    assert quantizer.indices_to_codes(quantizer(latents)[2][2]).is_contiguous()


# ------------------------------------------------------------------------------------------ health, EMA, restarts


def test_health_counts_training_steps_only():
    quantizer = init_quantizer(quantizer_for({}, codebook_usage_window=2))
    latents = photo_latents()
    with torch.no_grad():
        quantizer.eval()(latents)
        assert int(quantizer.usage_step) == 0
        output = quantizer.train()(latents, return_dict=True)
    assert int(quantizer.usage_step) == 1
    used = torch.unique(output.indices)
    assert float(output.running_usage) == pytest.approx(len(used) / 16)
    with torch.no_grad():
        for _ in range(2):
            output = quantizer(latents, return_dict=True)
    # the same ids every step: every other code has gone unused for the whole window
    assert int(output.dead_codes) == 16 - len(used)


def test_ema_buffers_move_only_in_train_mode():
    quantizer = init_quantizer(quantizer_for(OPTIONS["vq-ema"]))
    latents = photo_latents()
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    with torch.no_grad():
        quantizer.eval()(latents)
    for key, value in quantizer.state_dict().items():
        assert torch.equal(value, before[key]), key
    with torch.no_grad():
        quantizer.train()(latents)
    after = quantizer.state_dict()
    for key in ("ema_cluster_size", "ema_embed_sum", "embedding.weight", "usage_step"):
        assert not torch.equal(after[key], before[key]), key


def test_ema_moves_used_codes_towards_their_latents():
    quantizer = init_quantizer(quantizer_for(OPTIONS["vq-ema"], ema_decay=0.5)).train()
    latents = photo_latents()
    with torch.no_grad():
        first = quantizer(latents, return_dict=True).commitment_loss
        for _ in range(10):
            last = quantizer(latents, return_dict=True).commitment_loss
    assert last < 0.5 * first
    assert quantizer.embedding.weight.requires_grad is False


def test_collapsed_codebook_gets_its_dead_codes_restarted():
    quantizer = init_quantizer(quantizer_for(dict(dead_code_restart=True), codebook_usage_window=3)).train()
    with torch.no_grad():
        quantizer.embedding.weight.copy_(quantizer.embedding.weight[:1].expand(16, -1))  # every code the same
    latents = photo_latents()
    with torch.no_grad():
        collapsed = quantizer(latents, return_dict=True)
        assert len(torch.unique(collapsed.indices)) == 1
        for _ in range(3):
            quantizer(latents, return_dict=True)
        restarted = quantizer.eval()(latents, return_dict=True)
    assert len(torch.unique(quantizer.embedding.weight, dim=0)) > 8
    assert len(torch.unique(restarted.indices)) > 4
    assert restarted.commitment_loss < collapsed.commitment_loss
    # the re-seeded codes are encoder outputs of the batch
    flat = latents.permute(0, 2, 3, 1).reshape(-1, 4)
    distances = torch.cdist(quantizer.embedding.weight[1:], flat).min(dim=1).values
    assert (distances < 1e-5).sum() >= 8


def test_kmeans_initialises_the_codebook_once_from_the_first_batch():
    quantizer = init_quantizer(quantizer_for(dict(kmeans_init=True))).train()
    latents = photo_latents()
    with torch.no_grad():
        plain = init_quantizer(quantizer_for({})).eval()(latents, return_dict=True)
        first = quantizer(latents, return_dict=True)
        weight = quantizer.embedding.weight.clone()
        quantizer(latents, return_dict=True)
    assert int(quantizer.kmeans_done) == 1
    assert torch.equal(weight, quantizer.embedding.weight)  # not run again
    assert first.commitment_loss < 0.2 * plain.commitment_loss
    assert len(torch.unique(first.indices)) > len(torch.unique(plain.indices))


def test_l2_codes_are_unit_vectors_before_projection():
    quantizer = init_quantizer(quantizer_for(dict(codebook_l2_norm=True, codebook_dim=2)))
    assert quantizer.embedding.weight.shape == (16, 2)
    torch.testing.assert_close(quantizer.codebook().norm(dim=-1), torch.ones(16))
    assert quantizer.indices_to_codes(torch.zeros(1, 2, 2, dtype=torch.long)).shape == (1, 4, 2, 2)


# ----------------------------------------------------------------------------------------------------- gradients


def test_rotation_trick_value_is_the_code_and_gradient_is_rotated():
    z = torch.randn(64, 4, requires_grad=True)
    e = torch.randn(64, 4)
    out = rotate_onto(z, e)
    torch.testing.assert_close(out, e, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(64, 4)
    (out * upstream).sum().backward()
    # the gradient is λ Rᵀ g: same norm as the upstream gradient times ‖e‖/‖z‖, a different direction
    scale = e.norm(dim=-1) / z.detach().norm(dim=-1)
    torch.testing.assert_close(z.grad.norm(dim=-1), scale * upstream.norm(dim=-1), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(z.grad, upstream)


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("estimator", ["straight_through", "rotation"])
def test_reconstruction_gradient_reaches_the_encoder_but_not_the_codebook(estimator):
    model = VQGANModel(tiny_vqgan(gradient_estimator=estimator)).train()
    grads = _grads(model, model(photo_batch()).reconstruction_loss)
    assert grads["quant_conv.weight"].abs().sum() > 0
    assert grads["quantize.embedding.weight"] is None


def test_low_dim_codebook_terms_train_what_they_should():
    model = VQGANModel(tiny_vqgan(codebook_l2_norm=True, codebook_dim=2)).train()
    output = model(photo_batch())
    grads = _grads(model, output.codebook_loss)
    assert grads["quantize.embedding.weight"].abs().sum() > 0
    assert all(g is None for n, g in grads.items() if n.startswith(("encoder.", "quant_conv.", "quantize.project_in")))
    grads = _grads(model, output.commitment_loss)
    assert grads["quantize.project_in.weight"].abs().sum() > 0 and grads["quant_conv.weight"].abs().sum() > 0
    assert grads["quantize.embedding.weight"] is None or not grads["quantize.embedding.weight"].abs().sum()
    grads = _grads(model, output.reconstruction_loss)
    assert grads["quantize.project_out.weight"].abs().sum() > 0 and grads["quantize.project_in.weight"].abs().sum() > 0


def test_entropy_term_trains_encoder_and_codebook():
    model = VQGANModel(tiny_vqgan(entropy_loss_weight=0.1)).train()
    output = model(photo_batch())
    assert output.entropy_loss.requires_grad
    torch.testing.assert_close(
        output.quantizer_loss, output.codebook_loss + output.commitment_loss + output.entropy_loss
    )
    grads = _grads(model, output.entropy_loss)
    assert grads["quantize.embedding.weight"].abs().sum() > 0 and grads["quant_conv.weight"].abs().sum() > 0


def test_ema_codebook_has_no_gradient_and_zero_codebook_loss():
    model = VQGANModel(tiny_vqgan(codebook_update="ema")).train()
    output = model(photo_batch())
    assert float(output.codebook_loss) == 0.0
    grads = _grads(model, output.loss)
    assert grads["quantize.embedding.weight"] is None
    assert grads["quant_conv.weight"].abs().sum() > 0


def test_lfq_entropy_and_commitment_train_the_projection():
    model = VQGANModel(tiny_vqgan(**OPTIONS["lfq"], num_vq_embeddings=8)).train()  # 3 bits from 4 channels
    output = model(photo_batch())
    assert float(output.codebook_loss) == 0.0 and output.entropy_loss.requires_grad
    grads = _grads(model, output.entropy_loss + output.commitment_loss)
    assert grads["quantize.project_in.weight"].abs().sum() > 0
    assert grads["quant_conv.weight"].abs().sum() > 0


def test_fsq_has_no_loss_and_a_straight_through_gradient():
    model = VQGANModel(tiny_vqgan(**OPTIONS["fsq"])).train()
    output = model(photo_batch())
    assert float(output.quantizer_loss) == 0.0
    grads = _grads(model, output.reconstruction_loss)
    assert grads["quantize.project_in.weight"].abs().sum() > 0 and grads["quant_conv.weight"].abs().sum() > 0


def test_fsq_and_lfq_grids_give_every_id_its_own_code():
    fsq = init_quantizer(FiniteScalarQuantizer(levels=[5, 4, 3], embed_dim=3))
    ids = torch.arange(60).view(1, 60, 1)
    codes = fsq.indices_to_codes(ids)[0, :, :, 0].t()
    assert len(torch.unique(codes, dim=0)) == 60 and codes.abs().max() <= 1
    with torch.no_grad():  # wide random latents reach every grid point
        hit = fsq.eval()(3 * torch.randn(1, 3, 4000, 1), return_dict=True).indices
    assert torch.equal(torch.unique(hit), torch.arange(60))
    lfq = init_quantizer(LookupFreeQuantizer(codebook_size=16, embed_dim=4))
    ids = torch.arange(16).view(1, 16, 1)
    codes = lfq.indices_to_codes(ids)
    with torch.no_grad():
        assert torch.equal(lfq.eval()(codes, return_dict=True).indices, ids)


def test_residual_stages_reduce_the_error():
    latents = photo_latents()
    errors = []
    for depth in (1, 2, 4):
        quantizer = init_quantizer(
            ResidualVectorQuantizer(num_quantizers=depth, codebook_size=16, embed_dim=4, kmeans_init=True)
        ).train()
        with torch.no_grad():
            quantizer(latents)
            output = quantizer.eval()(latents, return_dict=True)
        errors.append(float(F.mse_loss(output.quantized, latents)))
    assert errors[0] > errors[1] > errors[2]


# ------------------------------------------------------------------------------------------ models, save/load


@pytest.mark.parametrize("name", ["vq-everything", "fsq", "lfq", "residual_vq"])
@pytest.mark.parametrize("make", [tiny_vqgan, tiny_vqvae], ids=["vqgan", "vqvae"])
def test_every_type_trains_through_both_models_from_the_config(name, make):
    torch.manual_seed(0)
    config = make(**OPTIONS[name])
    model = (VQGANModel if make is tiny_vqgan else VQVAEModel)(config).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    pixel_values = photo_batch()
    losses = []
    for _ in range(8):
        output = model(pixel_values)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(float(output.reconstruction_loss.detach()))
    assert losses[-1] < losses[0]
    assert int(model.quantize.layers[0].usage_step if name == "residual_vq" else model.quantize.usage_step) == 8
    model.eval()
    with torch.no_grad():
        ids = model.encode_to_indices(pixel_values)
        assert torch.equal(model.decode_indices(ids), model.decode(model.encode(pixel_values).latents).sample)
        output = model(pixel_values)
    assert 0 < float(output.running_usage) <= 1


@pytest.mark.parametrize("name", ["vq-everything", "residual_vq", "lfq"])
def test_from_pretrained_restores_the_statistics_exactly(name, tmp_path):
    model = VQGANModel(tiny_vqgan(**OPTIONS[name])).train()
    with torch.no_grad():
        for _ in range(3):
            model(photo_batch())
    model.eval()
    model.save_pretrained(tmp_path)
    reloaded = VQGANModel.from_pretrained(tmp_path).eval()
    state, loaded = model.state_dict(), reloaded.state_dict()
    assert state.keys() == loaded.keys()
    buffers = [key for key, _ in model.named_buffers()]
    assert any("usage_step" in key for key in buffers)
    for key in state:
        assert torch.equal(state[key], loaded[key]), key
    assert int(loaded[next(k for k in buffers if "usage_step" in k)]) == 3
    with torch.no_grad():
        a, b = model(photo_batch()), reloaded(photo_batch())
    assert torch.equal(a.reconstruction, b.reconstruction)
    assert torch.equal(a.running_usage, b.running_usage) and torch.equal(a.dead_codes, b.dead_codes)


def test_residual_token_api_checks_the_depth():
    model = VQGANModel(tiny_vqgan(**OPTIONS["residual_vq"])).eval()
    with pytest.raises(ValueError, match="batch, height, width, 3"):
        model.decode_indices(torch.zeros(1, 4, 4, dtype=torch.long))
    assert model.decode_indices(torch.zeros(1, 4, 4, 3, dtype=torch.long)).shape == (1, 3, 8, 8)


def test_residual_vq_with_one_quantizer_round_trips_its_ids():
    """Residual VQ ids keep their stage axis whatever the depth, `(B, h, w, Q)` with Q = 1 too (one rank for every
    Q, and `ids[..., 0]` is always the coarse stage), and the layout says so: decoding what `encode_to_indices`
    returns used to raise, because the layout expected `(B, h, w)` at depth 1."""
    model = VQGANModel(tiny_vqgan(quantizer_type="residual_vq")).eval()
    assert model.quantize.num_quantizers == 1
    with torch.no_grad():
        output = model(photo_batch())
        ids = model.encode_to_indices(photo_batch())
        assert ids.shape == (2, 16, 16, 1) and model.token_layout.token_shapes(32, 32) == [(16, 16, 1)]
        assert torch.equal(model.decode_indices(ids), output.reconstruction)
    layout = model.token_layout
    assert layout.vocabulary_size == 16 and layout.unflatten(layout.flatten(ids), 32, 32).shape == ids.shape
    assert layout.to_dict()["levels"][0]["stacked"] is True
    with pytest.raises(ValueError, match="batch, height, width, 1"):
        model.decode_indices(ids[..., 0])


def test_checkpoint_saved_without_health_buffers_loads_its_codebook_untouched(tmp_path):
    """Checkpoints written before the health buffers existed (or converted ones) keep their codebook; counters start
    at 0."""
    from safetensors.torch import load_file, save_file

    model = VQGANModel(tiny_vqgan()).eval()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    old = {key: value for key, value in weights.items() if "usage_step" not in key and "code_last_used" not in key}
    assert len(old) == len(weights) - 2
    save_file(old, tmp_path / "model.safetensors", metadata={"format": "pt"})
    reloaded = VQGANModel.from_pretrained(tmp_path)
    assert torch.equal(reloaded.quantize.embedding.weight, model.quantize.embedding.weight)
    assert int(reloaded.quantize.usage_step) == 0 and not reloaded.quantize.code_last_used.any()


def test_restarted_codes_count_as_used_only_once_chosen():
    quantizer = init_quantizer(quantizer_for(dict(dead_code_restart=True), codebook_usage_window=2)).train()
    latents = photo_latents()[:1, :, :2, :2]  # 4 latents: at most 4 of the 16 codes can be used per step
    with torch.no_grad():
        for _ in range(6):
            output = quantizer(latents, return_dict=True)
    assert float(output.running_usage) <= 8 / 16
    assert int(quantizer.code_restarted_at.max()) > 0


@pytest.mark.parametrize(
    "options",
    [
        dict(dead_code_restart=True, codebook_l2_norm=True, codebook_dim=2, codebook_usage_window=1),
        dict(codebook_update="ema", entropy_loss_weight=0.1),
        dict(codebook_update="ema", dead_code_restart=True, codebook_usage_window=1, gradient_estimator="rotation"),
    ],
    ids=["restart-l2", "ema-entropy", "ema-restart-rotation"],
)
def test_in_place_codebook_updates_do_not_break_backward(options):
    """EMA and restarts rewrite the codebook during forward; backward must still see this step's codes."""
    model = VQGANModel(tiny_vqgan(**options)).train()
    for _ in range(3):
        output = model(photo_batch())
        output.loss.backward()
    assert model.quant_conv.weight.grad.abs().sum() > 0


def test_recommended_fields_build_a_valid_config_and_plain_stays_the_default():
    from hf_vq.modeling.configuration_utils import RECOMMENDED_QUANTIZER_FIELDS

    recommended = tiny_vqgan(**RECOMMENDED_QUANTIZER_FIELDS)
    assert recommended.kmeans_init and recommended.dead_code_restart
    plain = VQGANConfig()
    for name, value in LEGACY_QUANTIZER_FIELDS.items():
        assert getattr(plain, name) == value, name
