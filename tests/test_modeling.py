"""Shared checks for every hf-vq model (the transformers ModelTester pattern), on tiny configs.

The testers live in `helpers/model_testers.py`; every check runs on each of them unless it tests an API only
single-grid models have (`encode` to latents, diffusers' `quantize` tuple) or one model's own option. Token ids are
read through `model.token_layout`: one tensor for a single grid, a tuple of levels for VQ-VAE-2.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_vq import VQGANConfig, VQGANModel, VQVAE2Config, VQVAEConfig

from helpers import photo_batch
from helpers.model_testers import SHARED_CONFIG_ERRORS, SINGLE_GRID_TESTERS, TESTERS, VQGANTester


@pytest.fixture(params=TESTERS, ids=lambda t: t.model_class.__name__)
def tester(request):
    return request.param


@pytest.fixture(params=SINGLE_GRID_TESTERS, ids=lambda t: t.model_class.__name__)
def single_grid_tester(request):
    return request.param


def levels(model, indices) -> tuple[torch.Tensor, ...]:
    """The ids as one tensor per level, coarse to fine."""
    return model.token_layout.split(indices)


def expected_grids(tester, batch: int, height: int, width: int) -> list[tuple[int, int, int]]:
    return [(batch, height // factor, width // factor) for factor in tester.grid_factors]


def assert_equal(expected, got, name: str = "") -> None:
    """`torch.equal` through tuples of tensors (a hierarchy's ids) and `None`s."""
    if expected is None:
        assert got is None, name
    elif isinstance(expected, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(expected), name
        for a, b in zip(expected, got):
            assert_equal(a, b, name)
    else:
        assert torch.equal(expected, got), name


@pytest.mark.parametrize("channels", [3, 1])
def test_output_shapes(tester, channels):
    model = tester.model_class(tester.config(in_channels=channels, out_channels=channels)).eval()
    pixel_values = photo_batch(channels=channels)
    output = model(pixel_values)
    grids = expected_grids(tester, 2, 32, 32)
    assert type(output) is tester.output_class
    assert output.reconstruction.shape == pixel_values.shape
    ids = levels(model, output.indices)
    assert [tuple(level.shape) for level in ids] == grids and all(level.dtype == torch.long for level in ids)
    if tester.single_grid:
        assert output.latents.shape == (2, model.config.vq_embed_dim, *grids[0][1:])
        assert output.quantized.shape == output.latents.shape
    for name in ("loss", "reconstruction_loss", "quantizer_loss", "codebook_loss", "commitment_loss", "perplexity"):
        assert getattr(output, name).dim() == 0, name
    assert 0 < output.codebook_usage <= 1
    assert 1 <= output.perplexity <= max(tester.codebook_sizes)
    torch.testing.assert_close(output.loss, output.reconstruction_loss + output.codebook_loss + output.commitment_loss)


def test_non_square_image(tester):
    model = tester.model_class(tester.config()).eval()
    pixel_values = torch.nn.functional.interpolate(photo_batch(), size=(32, 48))
    ids = levels(model, model.encode_to_indices(pixel_values))
    assert [tuple(level.shape) for level in ids] == expected_grids(tester, 2, 32, 48)


def test_save_load_round_trip_is_bit_exact(tester, tmp_path):
    """After a training step, so that k-means, EMA statistics and the health counters have moved off their init."""
    model = tester.model_class(tester.config(kmeans_init=True, codebook_update="ema")).train()
    model(photo_batch())
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "README.md").is_file()
    reloaded = tester.model_class.from_pretrained(tmp_path)
    state, loaded = model.state_dict(), reloaded.state_dict()
    assert state.keys() == loaded.keys()
    for name, tensor in state.items():
        assert torch.equal(tensor, loaded[name]), name
    model.eval(), reloaded.eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        assert torch.equal(model(pixel_values).reconstruction, reloaded(pixel_values).reconstruction)


def test_auto_classes(tester, tmp_path):
    model = tester.model_class(tester.config())
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is tester.config_class
    assert type(AutoModel.from_pretrained(tmp_path)) is tester.model_class
    assert type(AutoModel.from_config(config)) is tester.model_class


def test_model_types_do_not_collide_with_transformers():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    assert {VQGANConfig, VQVAEConfig, VQVAE2Config} <= {tester.config_class for tester in TESTERS}
    for tester in TESTERS:
        assert tester.config_class.model_type not in CONFIG_MAPPING_NAMES


def test_return_dict_false_tuple_order(tester):
    model = tester.model_class(tester.config()).eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        as_dict = model(pixel_values)
        as_tuple = model(pixel_values, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(as_dict)
    for (name, expected), got in zip(as_dict.items(), as_tuple):
        assert_equal(expected, got, name)
    assert torch.equal(as_tuple[0], as_dict.reconstruction)


def test_eval_is_deterministic(tester):
    model = tester.model_class(tester.config(**tester.random_forward)).eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        assert torch.equal(model(pixel_values).reconstruction, model(pixel_values).reconstruction)


def test_every_trainable_parameter_gets_a_gradient(tester):
    model = tester.model_class(tester.config()).train()
    output = model(photo_batch())
    output.loss.backward()
    missing = [
        name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())
    ]
    assert not missing, f"no gradient for {missing}"


def _grads_of(model, loss) -> dict[str, torch.Tensor | None]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def _touched(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(grad.abs().sum())


def test_commitment_trains_encoder_only_and_codebook_term_trains_codebook_only(tester):
    model = tester.model_class(tester.config()).train()
    pixel_values = photo_batch()

    grads = _grads_of(model, model(pixel_values).commitment_loss)
    assert not any(_touched(grads[name]) for name in tester.codebooks)
    assert all(_touched(grads[name]) for name in tester.first_encoder_parameters)
    assert all(g is None for name, g in grads.items() if name.startswith(tester.decoder_prefixes))

    grads = _grads_of(model, model(pixel_values).codebook_loss)
    assert all(_touched(grads[name]) for name in tester.codebooks)
    assert all(g is None for name, g in grads.items() if name.startswith(tester.encoder_prefixes))


def test_beta_placement(tester):
    """β sits on the commitment term by default; `beta_placement="codebook"` reproduces taming/diffusers legacy."""
    pixel_values = photo_batch()
    torch.manual_seed(0)
    ours = tester.model_class(tester.config(commitment_cost=0.5)).eval()
    torch.manual_seed(0)
    legacy = tester.model_class(tester.config(commitment_cost=0.5, beta_placement="codebook")).eval()
    with torch.no_grad():
        a, b = ours(pixel_values), legacy(pixel_values)
    # Both terms are the same squared distance before weighting.
    torch.testing.assert_close(a.commitment_loss / 0.5, a.codebook_loss)
    torch.testing.assert_close(b.codebook_loss / 0.5, b.commitment_loss)
    torch.testing.assert_close(a.commitment_loss, b.codebook_loss)


def test_straight_through_gradient_reaches_encoder_from_reconstruction(tester):
    model = tester.model_class(tester.config()).train()
    output = model(photo_batch())
    grads = _grads_of(model, output.reconstruction_loss)
    assert _touched(grads["quant_conv.weight"])
    assert all(_touched(grads[name]) for name in tester.first_encoder_parameters)  # every encoder, through the codes
    assert all(_touched(g) for name, g in grads.items() if name.startswith(tester.decoder_prefixes))
    assert all(grads[name] is None for name in tester.codebooks)


def test_decoding_the_ids_equals_the_forward_reconstruction_in_eval(tester):
    model = tester.model_class(tester.config()).eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        output = model(pixel_values)
        indices = model.encode_to_indices(pixel_values)
        from_tokens = model.decode_indices(indices)
    for level, size in zip(levels(model, indices), tester.codebook_sizes):
        assert level.min() >= 0 and level.max() < size
    assert_equal(output.indices, indices)
    assert torch.equal(from_tokens, output.reconstruction)


def test_decoding_the_ids_equals_decoding_the_latents(single_grid_tester):
    tester = single_grid_tester
    model = tester.model_class(tester.config()).eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        from_tokens = model.decode_indices(model.encode_to_indices(pixel_values))
        from_latents = model.decode(model.encode(pixel_values).latents).sample
    assert torch.equal(from_tokens, from_latents)


def test_diffusers_quantize_tuple_and_codebook_lookup(single_grid_tester):
    tester = single_grid_tester
    model = tester.model_class(tester.config()).eval()
    with torch.no_grad():
        latents = model.encode(photo_batch()).latents
        z_q, loss, (perplexity, unused, indices) = model.quantize(latents)
    assert unused is None and loss.dim() == 0 and perplexity.dim() == 0
    batch, dim, height, width = latents.shape
    flat = indices.reshape(-1)  # aMUSEd passes flat ids plus the (B, h, w, D) shape
    torch.testing.assert_close(model.quantize.get_codebook_entry(flat, (batch, height, width, dim)), z_q)


def test_decode_with_lookup_from_codebook():
    model = VQGANModel(VQGANTester.config(lookup_from_codebook=True)).eval()
    with torch.no_grad():
        indices = model.encode_to_indices(photo_batch())
        batch, height, width = indices.shape
        images = model.decode(
            indices.reshape(batch, -1),
            force_not_quantize=True,
            shape=(batch, height, width, model.config.vq_embed_dim),
        ).sample
    assert torch.equal(images, model.decode_indices(indices))


def test_decode_of_quantized_latents_works_for_every_model(single_grid_tester):
    """Regression: `VQVAEModel.decode(q, force_not_quantize=True)` raised AttributeError (`lookup_from_codebook` was a
    VQ-GAN-only field read by the shared base class)."""
    tester = single_grid_tester
    model = tester.model_class(tester.config()).eval()
    with torch.no_grad():
        encoded = model.encode(photo_batch())
        decoded = model.decode(encoded.quantized, force_not_quantize=True).sample
    assert torch.equal(decoded, model.decode_indices(encoded.indices))


def test_models_describe_their_token_layout(tester):
    model = tester.model_class(tester.config()).eval()
    layout = model.token_layout
    assert layout.num_levels == len(tester.codebook_sizes)
    assert tuple(level.codebook_size for level in layout.levels) == tester.codebook_sizes
    if tester.single_grid:
        assert tester.codebook_sizes == (model.config.num_vq_embeddings,)
    with torch.no_grad():
        ids = levels(model, model.encode_to_indices(photo_batch()))
    assert [tuple(level.shape[1:]) for level in ids] == layout.token_shapes(32, 32)
    counts = layout.count_codes(layout.join(ids))
    assert len(counts) == layout.num_levels
    assert [int(count.sum()) for count in counts] == [level.numel() for level in ids]


def test_gradient_checkpointing_gives_the_same_gradients(tester):
    torch.manual_seed(0)
    model = tester.model_class(tester.config()).train()
    pixel_values = photo_batch()
    reference = _grads_of(model, model(pixel_values).loss)
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    checkpointed = _grads_of(model, model(pixel_values).loss)
    for name, grad in reference.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


def test_meta_device_load_sets_every_buffer(tester, tmp_path):
    """from_pretrained builds on the meta device: whatever is not in the checkpoint must come from _init_weights."""
    model = tester.model_class(tester.config())
    model.save_pretrained(tmp_path)
    reloaded = tester.model_class.from_pretrained(tmp_path)
    for name, tensor in list(reloaded.named_parameters()) + list(reloaded.named_buffers()):
        assert tensor.device.type == "cpu" and torch.isfinite(tensor).all(), name


def test_fresh_codebook_uses_taming_init():
    model = VQGANModel(VQGANTester.config(num_vq_embeddings=64))
    weight = model.quantize.embedding.weight
    assert weight.abs().max() <= 1 / 64 and weight.std() > 0


def test_quantizer_runs_in_fp32_under_autocast():
    model = VQGANModel(VQGANTester.config()).eval()
    latents = model.encode(photo_batch()).latents
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model.quantize(latents.bfloat16(), return_dict=True)
    # Ids equal to the fp32 search on the same (bf16-rounded) latents: no tie flicker from bf16 distances.
    reference = model.quantize(latents.bfloat16().float(), return_dict=True)
    assert torch.equal(output.indices, reference.indices)
    assert output.quantized.dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "make_input, error, match",
    [
        (lambda: photo_batch()[0], ValueError, "4 dimensions"),
        (lambda: photo_batch(channels=1), ValueError, "3 channels"),
        (lambda: (photo_batch() * 127).to(torch.uint8), TypeError, "floating-point"),
        (lambda: photo_batch().index_put_((torch.tensor([0]),), torch.tensor(float("nan"))), ValueError, "NaN"),
        (lambda: photo_batch()[..., :31, :31], ValueError, "nearest valid size"),
        (lambda: photo_batch().numpy(), TypeError, "torch.Tensor"),
    ],
    ids=["rank", "channels", "dtype", "nan", "size", "numpy"],
)
def test_bad_pixel_values(tester, make_input, error, match):
    model = tester.model_class(tester.config())
    entry_points = [model, model.encode_to_indices, *([model.encode] if tester.single_grid else [])]
    for entry_point in entry_points:
        with pytest.raises(error, match=match):
            entry_point(make_input())


def test_size_error_names_the_nearest_valid_size():
    model = VQGANModel(VQGANTester.config(block_out_channels=[8, 8, 16], down_block_types=None))
    with pytest.raises(ValueError, match="divisible by the downsampling factor 4.*30x30.*32x32"):
        model(photo_batch()[..., :30, :30])


@pytest.mark.parametrize(
    "make_bad, error, match",
    [
        (lambda ids, size: torch.full_like(ids, size), ValueError, r"\[0, {size}\)"),
        (lambda ids, size: torch.full_like(ids, -1), ValueError, r"\[0, {size}\)"),
        (lambda ids, size: ids.float(), TypeError, "integer"),
        (lambda ids, size: ids.reshape(-1), ValueError, "batch, height, width"),
    ],
    ids=["too-large", "negative", "float", "flat"],
)
def test_bad_indices(tester, make_bad, error, match):
    """Each level in turn gets the bad ids, the others stay valid; a hierarchy's message names the level."""
    model = tester.model_class(tester.config())
    layout = model.token_layout
    valid = [torch.zeros(1, *shape, dtype=torch.long) for shape in layout.token_shapes(32, 32)]
    for i, (level, size) in enumerate(zip(layout.levels, tester.codebook_sizes)):
        ids = [*valid[:i], make_bad(valid[i], size), *valid[i + 1 :]]
        pattern = match.format(size=size)
        with pytest.raises(error, match=pattern if layout.num_levels == 1 else f"'{level.name}'.*{pattern}"):
            model.decode_indices(layout.join(ids))


CONFIG_ERRORS = [(tester, *case) for tester in TESTERS for case in SHARED_CONFIG_ERRORS + tester.config_errors]


@pytest.mark.parametrize(
    "tester, overrides, match",
    CONFIG_ERRORS,
    ids=[f"{tester.model_class.__name__}-{'-'.join(overrides)}" for tester, overrides, _ in CONFIG_ERRORS],
)
def test_config_errors_name_the_field(tester, overrides, match):
    with pytest.raises(ValueError, match=match):
        tester.config(**overrides)


def test_config_error_says_expected_received_and_fix():
    with pytest.raises(ValueError) as info:
        VQGANTester.config(norm_num_groups=3)
    message = str(info.value)
    assert "must be a divisor" in message and "got 3" in message and "Pick a group count" in message


def test_spatial_norm_needs_equal_latent_and_code_dims():
    with pytest.raises(ValueError, match="vq_embed_dim"):
        VQGANModel(VQGANTester.config(norm_type="spatial", vq_embed_dim=8))
    model = VQGANModel(VQGANTester.config(norm_type="spatial")).eval()
    with torch.no_grad():
        assert model(photo_batch()).reconstruction.shape == (2, 3, 32, 32)


def test_defaults_are_the_papers():
    gan = VQGANConfig()  # taming f16 ImageNet
    assert gan.block_out_channels == [128, 128, 256, 256, 512] and gan.layers_per_block == 2
    assert gan.downsampling_factor == 16 and gan.latent_channels == gan.vq_embed_dim == 256
    assert gan.down_block_types[-1] == "AttnDownEncoderBlock2D" and gan.mid_block_add_attention
    vae = VQVAEConfig()  # van den Oord et al. 2017
    assert vae.hidden_channels == 256 and vae.num_vq_embeddings == 512 and vae.downsampling_factor == 4


def test_enable_tiling_routes_large_images_through_tiles():
    model = VQGANModel(VQGANTester.config()).eval()
    pixel_values = torch.nn.functional.interpolate(photo_batch(), size=(64, 96), mode="area")
    with torch.no_grad():
        whole = model.decode(model.encode(pixel_values).latents).sample
        model.enable_tiling(tile_sample_size=96)  # no side exceeds the tile: nothing changes
        assert torch.equal(model.decode(model.encode(pixel_values).latents).sample, whole)
        model.enable_tiling(tile_sample_size=32)
        tokens = model.encode_to_indices(pixel_values)
        tiled = model.decode_indices(tokens)
        model.disable_tiling()
        untiled_from_tiled_tokens = model.decode_indices(tokens)
    assert tokens.shape == (2, 32, 48) and tiled.shape == whole.shape
    assert not torch.equal(tiled, untiled_from_tiled_tokens)  # the tiled path really ran
