"""`VQGANModel.to_diffusers()` / `VQGANModel.from_diffusers()`: stock diffusers.VQModel out, any VQModel in."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from hf_vq import VQGANConfig, VQGANModel

from helpers import TINY_VQGAN as TINY
from helpers import photo_batch

# Kandinsky 2.2's MoVQ layout (spatial norms in the decoder); diffusers' SpatialNorm always has 32 groups.
MOVQ = dict(
    block_out_channels=[32, 64],
    down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
    layers_per_block=1,
    latent_channels=4,
    num_vq_embeddings=12,
    norm_num_groups=32,
    norm_type="spatial",
    sample_size=32,
)


def _images(channels=3, size=32):
    return torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _assert_same_model(ours, vq_model, x, atol=1e-5):
    with torch.no_grad():
        ref_latents = vq_model.encode(x).latents
        encoded = ours.encode(x)
        assert (encoded.latents - ref_latents).abs().max() <= atol
        ref = vq_model(x).sample
        assert (ours(x).reconstruction - ref).abs().max() <= atol
        # Decoding given codes (force_not_quantize) and given latents (quantized inside).
        given = (
            encoded.indices if ours.config.lookup_from_codebook else ours.quantize.indices_to_codes(encoded.indices)
        )
        shape = (*encoded.indices.shape, ours.config.vq_embed_dim)
        ref_codes = vq_model.decode(given, force_not_quantize=True, shape=shape).sample
        assert (ours.decode(given, force_not_quantize=True, shape=shape).sample - ref_codes).abs().max() <= atol
        assert torch.equal(vq_model.quantize(encoded.latents)[2][2].view_as(encoded.indices), encoded.indices)


@pytest.mark.parametrize("fields", [TINY, MOVQ], ids=["vqgan", "movq"])
def test_export_is_a_stock_vqmodel_with_equal_outputs(fields, tmp_path):
    model = VQGANModel(VQGANConfig(**fields, scaling_factor=0.5, force_upcast=True)).eval()
    vq_model = model.to_diffusers(save_directory=tmp_path)
    assert type(vq_model) is diffusers.VQModel
    assert vq_model.config.scaling_factor == 0.5 and vq_model.config.force_upcast
    assert vq_model.config.norm_type == fields.get("norm_type", "group")
    _assert_same_model(model, vq_model, _images())
    with torch.no_grad():  # the export owns its weights
        model.decoder.conv_out.weight.add_(1.0)
    assert not torch.equal(vq_model.decoder.conv_out.weight, model.decoder.conv_out.weight)
    # The saved folder loads without hf-vq involved.
    reloaded = diffusers.VQModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(_images()).sample, vq_model(_images()).sample)


def test_export_lookup_from_codebook_decodes_ids():
    model = VQGANModel(VQGANConfig(**TINY, lookup_from_codebook=True)).eval()
    vq_model = model.to_diffusers()
    ids = torch.randint(0, 16, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.decode(ids.flatten(1), force_not_quantize=True, shape=(2, 16, 16, 4)).sample
        ref = vq_model.decode(ids.flatten(1), force_not_quantize=True, shape=(2, 16, 16, 4)).sample
    assert (ours - ref).abs().max() <= 1e-5
    assert torch.equal(ours, model.decode_indices(ids))


@pytest.mark.parametrize("fields", [TINY, MOVQ], ids=["vqgan", "movq"])
def test_import_from_instance_and_folder(fields, tmp_path):
    torch.manual_seed(1)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    vq_model = diffusers.VQModel(**kwargs).eval()
    ours = VQGANModel.from_diffusers(vq_model).eval()
    assert ours.config.beta_placement == "codebook" and ours.config.commitment_cost == 0.25
    _assert_same_model(ours, vq_model, _images())
    with torch.no_grad():  # diffusers' legacy quantizer loss is reproduced
        latents = vq_model.encode(_images()).latents
        assert torch.allclose(ours.quantize(latents, return_dict=True).loss, vq_model.quantize(latents)[1], rtol=1e-5)
    vq_model.save_pretrained(tmp_path / "vqvae")
    from_folder = VQGANModel.from_diffusers(tmp_path, subfolder="vqvae").eval()
    with torch.no_grad():
        assert torch.equal(from_folder(_images()).reconstruction, ours(_images()).reconstruction)


def test_import_amused_like_vq_with_pixel_range_override():
    # aMUSEd's VQ: no mid-block attention, ids looked up from the codebook, works on [0, 1] images.
    vq_model = diffusers.VQModel(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        num_vq_embeddings=32,
        norm_num_groups=4,
        mid_block_add_attention=False,
        lookup_from_codebook=True,
        force_upcast=True,
    ).eval()
    ours = VQGANModel.from_diffusers(vq_model, pixel_range=(0.0, 1.0)).eval()
    assert ours.config.pixel_range == [0.0, 1.0] and ours.config.lookup_from_codebook and ours.config.force_upcast
    _assert_same_model(ours, vq_model, _images() * 0.5 + 0.5)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (dict(quantizer_type="fsq", fsq_levels=[4, 4], num_vq_embeddings=16, vq_embed_dim=2), "quantizer_type='fsq'"),
        (dict(quantizer_type="lfq", num_vq_embeddings=16), "quantizer_type='lfq'"),
        (dict(**{k: v for k, v in MOVQ.items() if k not in TINY}, codebook_dim=2), "codebook_dim=2 with norm_type"),
        (dict(act_fn="gelu"), "act_fn='gelu'"),
    ],
)
def test_inexpressible_exports_name_the_option(fields, named):
    model = VQGANModel(VQGANConfig(**{**TINY, **fields}))
    with pytest.raises(ValueError, match="cannot be exported to diffusers.VQModel.*" + named.replace("[", r"\[")):
        model.to_diffusers()


def _photos(size: int) -> torch.Tensor:
    """Real photo crops in [-1, 1]: a trained codebook's nearest codes are decided on real image statistics."""
    return photo_batch(size, batch=3, crop=256)


def _spread_codebook(model):
    """Codes drawn like encoder outputs (k-means init does this in training): every code has a chance to win."""
    with torch.no_grad():
        flat = model.quant_conv(model.encoder(_photos(model.config.sample_size))).permute(0, 2, 3, 1).flatten(0, 2)
        if model.config.codebook_dim is not None:
            flat = model.quantize.project_in(flat)
        generator = torch.Generator().manual_seed(0)
        picks = torch.randint(0, len(flat), (model.config.num_vq_embeddings,), generator=generator)
        model.quantize.embedding.weight.copy_(flat[picks] + 0.05 * torch.randn_like(flat[picks]))


@pytest.mark.parametrize(
    "fields",
    [dict(codebook_dim=2), dict(codebook_l2_norm=True), dict(codebook_dim=2, codebook_l2_norm=True)],
    ids=["low-dim", "l2", "low-dim+l2"],
)
def test_low_dimensional_and_l2_codes_export_exactly(fields):
    model = VQGANModel(VQGANConfig(**TINY, **fields)).eval()
    _spread_codebook(model)
    vq_model = model.to_diffusers()
    assert vq_model.config.vq_embed_dim == fields.get("codebook_dim", TINY["latent_channels"])
    x = _photos(32)
    with torch.no_grad():
        ours = model(x)
        # diffusers' own path: encode -> plain L2 quantizer (on unnormalised latents) -> decode
        latents = vq_model.encode(x).latents
        ids = vq_model.quantize(latents)[2][2].view_as(ours.indices)
        decoded = vq_model.decode(latents).sample
    assert torch.equal(ids, ours.indices)
    assert len(ids.unique()) > 1
    assert (decoded - ours.reconstruction).abs().max() <= 1e-5


def test_the_main_jobs_model_exports_exactly():
    """The README's flow, train then `to_diffusers`, on the model `hf-vq train` builds by default."""
    from hf_vq.modeling.configuration_utils import RECOMMENDED_QUANTIZER_FIELDS
    from hf_vq.training.tokenizer_types import DEFAULT_VQGAN_CONFIG

    config = VQGANConfig(**{**DEFAULT_VQGAN_CONFIG, **RECOMMENDED_QUANTIZER_FIELDS})
    assert config.codebook_dim == 8 and config.codebook_l2_norm
    model = VQGANModel(config).eval()
    _spread_codebook(model)
    vq_model = model.to_diffusers()
    x = _photos(config.sample_size)
    with torch.no_grad():
        ours = model(x)
        latents = vq_model.encode(x).latents
        ids = vq_model.quantize(latents)[2][2].view_as(ours.indices)
        decoded = vq_model.decode(latents).sample
    assert torch.equal(ids, ours.indices)
    assert len(ids.unique()) > 50  # many codes in play, so agreement is not luck
    assert (decoded - ours.reconstruction).abs().max() <= 1e-4


def test_import_errors_are_clear():
    with pytest.raises(TypeError, match="diffusers.VQModel or a path"):
        VQGANModel.from_diffusers(torch.nn.Linear(2, 2))
    spatial_8_groups = diffusers.VQModel(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        num_vq_embeddings=12,
        norm_num_groups=8,
        norm_type="spatial",
    )
    with pytest.raises(ValueError, match="norm_type='spatial' with norm_num_groups=8"):
        VQGANModel.from_diffusers(spatial_8_groups)


@pytest.mark.slow
def test_export_parity_taming_f16_config():
    """taming's f16 ImageNet architecture (K reduced to 1024), random weights. In fp64 the two models agree to
    1e-13: the mapping is exact. In fp32 they differ by ~2.7e-5 at 64 px (outputs of magnitude ~2), which is this
    decoder's own fp32 floor: diffusers' quantizer hands its decoder `z + (z_q - z)`, which is z_q only to ~3e-8,
    and that alone moves diffusers' output by ~1.8e-5. Ours hands the decoder z_q exactly (so decoding ids equals
    decoding latents bit for bit). The test pins our gap to the size of diffusers' own rounding noise."""
    torch.manual_seed(0)
    model = VQGANModel(VQGANConfig(num_vq_embeddings=1024)).eval()
    vq_model = model.to_diffusers()
    x = _images(size=64)[:1]
    with torch.no_grad():
        gap = (model(x).reconstruction - vq_model(x).sample).abs().max()
        latents = vq_model.encode(x).latents
        through_ste, _, (_, _, indices) = vq_model.quantize(latents)
        exact = model.quantize.indices_to_codes(indices.view(1, *latents.shape[2:]))
        assert 0 < (through_ste - exact).abs().max() < 1e-7
        own_noise = (
            (
                vq_model.decode(through_ste, force_not_quantize=True).sample
                - vq_model.decode(exact, force_not_quantize=True).sample
            )
            .abs()
            .max()
        )
        assert gap < 5e-5 and gap < 2 * own_noise, (gap, own_noise)
        model.double(), vq_model.double()
        assert (model(x.double()).reconstruction - vq_model(x.double()).sample).abs().max() < 1e-10
