"""Shared checks for every hf-vq model (the transformers ModelTester pattern), on tiny configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata
from transformers import AutoConfig, AutoModel

from hf_vq import VQGANConfig, VQGANModel, VQModelOutput, VQVAEConfig, VQVAEModel

from helpers import tiny_vqgan_config


def photo_batch(size: int = 32, channels: int = 3, batch: int = 2) -> torch.Tensor:
    """Real photo crops (astronaut, coffee) in [-1, 1], resized down so tiny models see real image statistics."""
    images = []
    for photo in (skdata.astronaut(), skdata.coffee())[:batch]:
        tensor = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float() / 127.5 - 1
        images.append(torch.nn.functional.interpolate(tensor[None], size=(size, size), mode="area")[0])
    pixel_values = torch.stack(images)
    if channels == 1:
        pixel_values = pixel_values.mean(dim=1, keepdim=True)
    return pixel_values


class VQGANTester:
    model_class = VQGANModel
    config_class = VQGANConfig

    @staticmethod
    def config(**overrides):
        return tiny_vqgan_config(**overrides)


class VQVAETester:
    model_class = VQVAEModel
    config_class = VQVAEConfig

    @staticmethod
    def config(**overrides):
        fields = dict(
            hidden_channels=16, residual_hidden_channels=8, num_residual_layers=1, latent_channels=4, num_vq_embeddings=16
        )
        fields.update(overrides)
        return VQVAEConfig(**fields)


TESTERS = [VQGANTester, VQVAETester]


@pytest.fixture(params=TESTERS, ids=lambda t: t.model_class.__name__)
def tester(request):
    return request.param


@pytest.mark.parametrize("channels", [3, 1])
def test_output_shapes(tester, channels):
    model = tester.model_class(tester.config(in_channels=channels, out_channels=channels)).eval()
    pixel_values = photo_batch(channels=channels)
    output = model(pixel_values)
    factor = model.downsampling_factor
    grid = (2, 32 // factor, 32 // factor)
    assert isinstance(output, VQModelOutput)
    assert output.reconstruction.shape == pixel_values.shape
    assert output.indices.shape == grid and output.indices.dtype == torch.long
    assert output.latents.shape == (2, model.config.vq_embed_dim, *grid[1:])
    assert output.quantized.shape == output.latents.shape
    for name in ("loss", "reconstruction_loss", "quantizer_loss", "codebook_loss", "commitment_loss", "perplexity"):
        assert getattr(output, name).dim() == 0, name
    assert 0 < output.codebook_usage <= 1
    assert 1 <= output.perplexity <= model.config.num_vq_embeddings
    torch.testing.assert_close(output.loss, output.reconstruction_loss + output.codebook_loss + output.commitment_loss)


def test_non_square_image(tester):
    model = tester.model_class(tester.config()).eval()
    pixel_values = torch.nn.functional.interpolate(photo_batch(), size=(32, 48))
    factor = model.downsampling_factor
    assert model.encode_to_indices(pixel_values).shape == (2, 32 // factor, 48 // factor)


def test_save_load_round_trip_is_bit_exact(tester, tmp_path):
    model = tester.model_class(tester.config()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded = tester.model_class.from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
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

    for config_class in (VQGANConfig, VQVAEConfig):
        assert config_class.model_type not in CONFIG_MAPPING_NAMES


def test_return_dict_false_tuple_order(tester):
    model = tester.model_class(tester.config()).eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        as_dict = model(pixel_values)
        as_tuple = model(pixel_values, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(as_dict)
    for expected, got in zip(as_dict.values(), as_tuple):
        assert torch.equal(expected, got)
    assert torch.equal(as_tuple[0], as_dict.reconstruction)


def test_eval_is_deterministic(tester):
    model = tester.model_class(tester.config(dropout=0.5) if tester is VQGANTester else tester.config()).eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        assert torch.equal(model(pixel_values).reconstruction, model(pixel_values).reconstruction)


def test_every_trainable_parameter_gets_a_gradient(tester):
    model = tester.model_class(tester.config()).train()
    output = model(photo_batch())
    output.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, f"no gradient for {missing}"


def _grads_of(model, loss) -> dict[str, torch.Tensor | None]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_commitment_trains_encoder_only_and_codebook_term_trains_codebook_only(tester):
    model = tester.model_class(tester.config()).train()
    pixel_values = photo_batch()

    grads = _grads_of(model, model(pixel_values).commitment_loss)
    assert grads["quantize.embedding.weight"] is None or not grads["quantize.embedding.weight"].abs().sum()
    assert grads["encoder.conv_in.weight" if tester is VQGANTester else "encoder.downsamplers.0.weight"].abs().sum() > 0
    assert all(g is None for name, g in grads.items() if name.startswith(("decoder.", "post_quant_conv.")))

    grads = _grads_of(model, model(pixel_values).codebook_loss)
    assert grads["quantize.embedding.weight"].abs().sum() > 0
    assert all(g is None for name, g in grads.items() if name.startswith(("encoder.", "quant_conv.")))


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
    assert grads["quant_conv.weight"].abs().sum() > 0
    assert grads["quantize.embedding.weight"] is None


def test_token_round_trip_equals_decoding_latents(tester):
    model = tester.model_class(tester.config()).eval()
    pixel_values = photo_batch()
    with torch.no_grad():
        indices = model.encode_to_indices(pixel_values)
        assert indices.min() >= 0 and indices.max() < model.config.num_vq_embeddings
        from_tokens = model.decode_indices(indices)
        from_latents = model.decode(model.encode(pixel_values).latents).sample
        from_forward = model(pixel_values).reconstruction
    assert torch.equal(from_tokens, from_latents)
    assert torch.equal(from_tokens, from_forward)


def test_diffusers_quantize_tuple_and_codebook_lookup(tester):
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
            indices.reshape(batch, -1), force_not_quantize=True, shape=(batch, height, width, model.config.vq_embed_dim)
        ).sample
    assert torch.equal(images, model.decode_indices(indices))


def test_decode_of_quantized_latents_works_for_every_model(tester):
    """Regression: `VQVAEModel.decode(q, force_not_quantize=True)` raised AttributeError (`lookup_from_codebook` was a
    VQ-GAN-only field read by the shared base class)."""
    model = tester.model_class(tester.config()).eval()
    with torch.no_grad():
        encoded = model.encode(photo_batch())
        decoded = model.decode(encoded.quantized, force_not_quantize=True).sample
    assert torch.equal(decoded, model.decode_indices(encoded.indices))


def test_models_describe_their_token_layout(tester):
    model = tester.model_class(tester.config()).eval()
    layout = model.token_layout
    assert layout.num_levels == 1 and layout.levels[0].codebook_size == model.config.num_vq_embeddings
    with torch.no_grad():
        indices = model.encode_to_indices(photo_batch())
    assert tuple(indices.shape[1:]) == layout.token_shapes(32, 32)[0]
    counts = layout.count_codes(indices)
    assert len(counts) == 1 and int(counts[0].sum()) == indices.numel()


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
    with pytest.raises(error, match=match):
        model(make_input())
    with pytest.raises(error, match=match):
        model.encode(make_input())


def test_size_error_names_the_nearest_valid_size():
    model = VQGANModel(VQGANTester.config(block_out_channels=[8, 8, 16], down_block_types=None))
    with pytest.raises(ValueError, match="divisible by the downsampling factor 4.*30x30.*32x32"):
        model(photo_batch()[..., :30, :30])


@pytest.mark.parametrize(
    "indices, error, match",
    [
        (torch.full((1, 4, 4), 16), ValueError, r"\[0, 16\)"),
        (torch.full((1, 4, 4), -1), ValueError, r"\[0, 16\)"),
        (torch.zeros(1, 4, 4), TypeError, "integer"),
        (torch.zeros(16, dtype=torch.long), ValueError, "batch, height, width"),
    ],
    ids=["too-large", "negative", "float", "flat"],
)
def test_bad_indices(tester, indices, error, match):
    model = tester.model_class(tester.config())
    with pytest.raises(error, match=match):
        model.decode_indices(indices)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"]), "down_block_types"),
        (dict(up_block_types=["UpDecoderBlock2D"] * 3), "up_block_types"),
        (dict(down_block_types=["DownEncoderBlock2D", "CrossAttnDownBlock2D"]), "CrossAttnDownBlock2D"),
        (dict(norm_num_groups=3), "norm_num_groups"),
        (dict(commitment_cost=-0.1), "commitment_cost"),
        (dict(pixel_range=(1.0, -1.0)), "pixel_range"),
        (dict(sample_size=31), "sample_size.*divisible by the downsampling factor 2.*Use 32"),
        (dict(num_vq_embeddings=0), "num_vq_embeddings"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_vqgan_config_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        VQGANTester.config(**overrides)


def test_config_error_says_expected_received_and_fix():
    with pytest.raises(ValueError) as info:
        VQGANTester.config(norm_num_groups=3)
    message = str(info.value)
    assert "must be a divisor" in message and "got 3" in message and "Pick a group count" in message


def test_vqvae_config_validation():
    with pytest.raises(ValueError, match="hidden_channels"):
        VQVAEConfig(hidden_channels=0)
    with pytest.raises(ValueError, match="num_residual_layers"):
        VQVAEConfig(num_residual_layers=-1)


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
