"""VQGANDiscriminator: PatchGAN shapes and receptive field, init, config validation, save/load round trips."""

import pytest
import torch

from hf_vq.modeling.configuration_discriminator import VQGANDiscriminatorConfig
from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator, VQGANDiscriminatorOutput

NORM_TYPES = ["batch", "group", "instance", "none"]


def tiny_config(**kwargs) -> VQGANDiscriminatorConfig:
    fields = dict(base_channels=8, num_layers=2, norm_num_groups=4)
    fields.update(kwargs)
    return VQGANDiscriminatorConfig(**fields)


@pytest.mark.parametrize("num_layers, size", [(1, 32), (2, 64), (3, 64), (3, 40)])
def test_output_is_a_logit_grid_of_the_documented_shape(num_layers, size):
    disc = VQGANDiscriminator(tiny_config(num_layers=num_layers, norm_type="none"))
    out = disc(torch.randn(2, 3, size, size))
    assert isinstance(out, VQGANDiscriminatorOutput)
    side = size // 2**num_layers - 2
    assert out.logits.shape == (2, 1, side, side)
    (logits,) = disc(torch.randn(2, 3, size, size), return_dict=False)
    assert logits.shape == out.logits.shape


@pytest.mark.parametrize("num_layers, field", [(1, 16), (2, 34), (3, 70)])
def test_receptive_field(num_layers, field):
    # Without normalisation (GroupNorm mixes all positions) one logit depends on a field x field input patch.
    disc = VQGANDiscriminator(tiny_config(base_channels=4, num_layers=num_layers, norm_type="none"))
    x = torch.randn(1, 3, 96, 96, requires_grad=True)
    logits = disc(x).logits
    logits[0, 0, logits.shape[2] // 2, logits.shape[3] // 2].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    assert rows.max() - rows.min() + 1 == field


def test_layer_widths_follow_taming():
    config = VQGANDiscriminatorConfig()
    assert config.layer_channels == [64, 128, 256, 512]
    assert VQGANDiscriminatorConfig(num_layers=5, norm_num_groups=8).layer_channels == [64, 128, 256, 512, 512, 512]


def test_batch_norm_variant_has_tamings_parameter_names():
    # taming's NLayerDiscriminator(3, 64, 3): main.{0,2,5,8,11} convs, BatchNorms at main.{3,6,9}, no biases
    # on the normalised convs. A taming discriminator's state dict therefore loads one to one.
    disc = VQGANDiscriminator(VQGANDiscriminatorConfig(norm_type="batch"))
    expected = {
        "main.0.weight",
        "main.0.bias",
        "main.2.weight",
        "main.5.weight",
        "main.8.weight",
        "main.11.weight",
        "main.11.bias",
    }
    for i in (3, 6, 9):
        expected |= {f"main.{i}.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert set(disc.state_dict()) == expected


def test_init_is_dcgan_normal():
    torch.manual_seed(0)
    disc = VQGANDiscriminator(VQGANDiscriminatorConfig(norm_type="batch"))
    conv = disc.main[5].weight  # 256x128x4x4 weights: tight estimates
    assert abs(conv.mean().item()) < 1e-3 and conv.std().item() == pytest.approx(0.02, rel=0.02)
    norm = disc.main[6]
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01) and norm.weight.std().item() == pytest.approx(
        0.02, rel=0.3
    )
    assert torch.all(norm.bias == 0) and torch.all(norm.running_mean == 0) and torch.all(norm.running_var == 1)
    assert torch.all(disc.main[0].bias == 0)


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_gradient_reaches_every_parameter(norm_type):
    disc = VQGANDiscriminator(tiny_config(norm_type=norm_type))
    disc(torch.randn(2, 3, 32, 32)).logits.mean().backward()
    for name, p in disc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_save_load_round_trip(tmp_path, norm_type):
    torch.manual_seed(0)
    disc = VQGANDiscriminator(tiny_config(norm_type=norm_type))
    # One training step, so BatchNorm's running statistics and every weight differ from a fresh init.
    optimizer = torch.optim.SGD(disc.parameters(), lr=0.1)
    disc(torch.randn(4, 3, 32, 32)).logits.mean().backward()
    optimizer.step()
    disc.eval()

    disc.save_pretrained(tmp_path)
    loaded, info = VQGANDiscriminator.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]

    def fields(config):
        return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}

    assert fields(loaded.config) == fields(disc.config)
    original, restored = disc.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(x).logits, disc(x).logits)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_layers": 0}, "num_layers"),
        ({"base_channels": 0}, "base_channels"),
        ({"norm_num_groups": 3}, "norm_num_groups"),  # 3 does not divide 16
        ({"leaky_relu_slope": -0.1}, "leaky_relu_slope"),
        ({"initializer_range": 0.0}, "initializer_range"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(**kwargs)


def test_group_count_only_matters_for_group_norm():
    # 3 groups divide none of the channel counts: an error with GroupNorm, ignored with BatchNorm, which has no groups.
    with pytest.raises(ValueError, match="norm_num_groups"):
        tiny_config(norm_type="group", norm_num_groups=3)
    disc = VQGANDiscriminator(tiny_config(norm_type="batch", norm_num_groups=3))
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in disc.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules())


def test_wrong_input_channels_raise():
    disc = VQGANDiscriminator(tiny_config())
    with pytest.raises(ValueError, match="pixel_values"):
        disc(torch.randn(2, 1, 32, 32))
