"""The VQ-GAN objective: each loss against hand-computed values, signs, the adaptive weight against a manual
autograd computation, the warm-up schedule, and the gradient isolation of the two training steps."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skdata

from hf_vq.losses import (
    LeCamEMA,
    VQGANLoss,
    VQGANLossConfig,
    adaptive_generator_weight,
    bce_discriminator_loss,
    discriminator_adversarial_loss,
    discriminator_trains,
    frozen_discriminator_logits,
    gan_ramp_factor,
    generator_adversarial_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lecam_regularization,
    non_saturating_generator_loss,
    r1_penalty,
    reconstruction_loss,
    vanilla_generator_loss,
)
from hf_vq.modeling import VQGANModel
from hf_vq.modeling.configuration_discriminator import VQGANDiscriminatorConfig
from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator

from helpers import tiny_vqgan_config

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])
LOG3 = math.log(3.0)


def tiny_vqgan(**overrides) -> VQGANModel:
    config = tiny_vqgan_config(**overrides)
    return VQGANModel(config)


def tiny_discriminator(norm_type: str = "group") -> VQGANDiscriminator:
    return VQGANDiscriminator(
        VQGANDiscriminatorConfig(base_channels=8, num_layers=2, norm_num_groups=4, norm_type=norm_type)
    )


def photo_crops(n: int = 2, size: int = 32) -> torch.Tensor:
    """`n` crops of the astronaut photo, in [-1, 1]."""
    image = torch.from_numpy(np.ascontiguousarray(skdata.astronaut()[::4, ::4])).permute(2, 0, 1).float() / 127.5 - 1
    return torch.stack([image[:, 20 + 24 * i : 20 + 24 * i + size, 30 : 30 + size] for i in range(n)])


# --- GAN losses: values -----------------------------------------------------------------------------------


def test_hinge_losses_hand_values():
    # relu(1 - real) = [0, .5, 2] -> mean 5/6; relu(1 + fake) = [0, 1, 2.5] -> mean 7/6; ½(5/6 + 7/6) = 1.
    assert hinge_discriminator_loss(REAL, FAKE).item() == pytest.approx(1.0)
    assert hinge_generator_loss(FAKE).item() == pytest.approx(0.5 / 3)  # -mean([-2, 0, 1.5])
    assert hinge_discriminator_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])).item() == 0.0


def test_bce_losses_hand_values():
    zeros = torch.zeros(4)
    assert bce_discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2))
    # D(x) = D(x̂) = log 3, i.e. σ = 3/4: ½(−log ¾ − log ¼).
    value = torch.tensor([LOG3])
    assert bce_discriminator_loss(value, value).item() == pytest.approx(0.5 * (math.log(4 / 3) + math.log(4)))
    assert non_saturating_generator_loss(value).item() == pytest.approx(-math.log(0.75))  # −log σ(D(x̂))
    assert vanilla_generator_loss(value).item() == pytest.approx(math.log(0.25))  # log(1 − σ(D(x̂)))


def test_non_saturating_generator_loss_has_bce_arguments_in_the_right_order():
    logits = torch.tensor([-3.0, -0.5, 0.25, 2.0])
    right = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    swapped = F.binary_cross_entropy_with_logits(torch.ones_like(logits), logits)  # LlamaGen #84
    assert non_saturating_generator_loss(logits).item() == pytest.approx(right.item())
    assert abs(non_saturating_generator_loss(logits).item() - swapped.item()) > 0.1


def test_dispatch_matches_the_named_losses():
    assert discriminator_adversarial_loss(REAL, FAKE, "hinge") == hinge_discriminator_loss(REAL, FAKE)
    for loss_type in ("non_saturating", "vanilla"):
        assert discriminator_adversarial_loss(REAL, FAKE, loss_type) == bce_discriminator_loss(REAL, FAKE)
    assert generator_adversarial_loss(FAKE, "hinge") == hinge_generator_loss(FAKE)
    assert generator_adversarial_loss(FAKE, "non_saturating") == non_saturating_generator_loss(FAKE)
    assert generator_adversarial_loss(FAKE, "vanilla") == vanilla_generator_loss(FAKE)
    with pytest.raises(ValueError, match="loss_type"):
        generator_adversarial_loss(FAKE, "wgan")
    with pytest.raises(ValueError, match="loss_type"):
        discriminator_adversarial_loss(REAL, FAKE, "wgan")


@pytest.mark.parametrize("loss_type", ["hinge", "non_saturating", "vanilla"])
def test_gradient_signs(loss_type):
    # The discriminator lowers its loss by raising real logits and lowering fake ones; the generator lowers its
    # loss by raising the fake logits. Points chosen inside the hinge margins so no gradient is clipped to 0.
    real = torch.tensor([0.3, -0.2], requires_grad=True)
    fake = torch.tensor([0.1, -0.4], requires_grad=True)
    discriminator_adversarial_loss(real, fake, loss_type).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    fake_g = fake.detach().requires_grad_(True)
    generator_adversarial_loss(fake_g, loss_type).backward()
    assert (fake_g.grad < 0).all()


def test_reconstruction_loss_hand_values():
    a = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert reconstruction_loss(a, b, "l1").item() == pytest.approx((1 + 0 + 2 + 1) / 4)
    assert reconstruction_loss(a, b, "l2").item() == pytest.approx((1 + 0 + 4 + 1) / 4)
    with pytest.raises(ValueError, match="loss_type"):
        reconstruction_loss(a, b, "huber")


# --- Regularisers -----------------------------------------------------------------------------------------


def test_lecam_hand_value():
    # relu([1, 3] − (−1))² = [4, 16] -> 10;  relu(2 − [−2, 0])² = [16, 4] -> 10.
    value = lecam_regularization(torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0]), 2.0, -1.0)
    assert value.item() == pytest.approx(20.0)
    # Inside the anchors, nothing is penalised.
    assert lecam_regularization(torch.tensor([-2.0]), torch.tensor([3.0]), 2.0, -1.0).item() == 0.0


def test_lecam_ema_is_bias_corrected():
    ema = LeCamEMA(decay=0.9)
    ema.update(torch.tensor([1.0, 3.0]), torch.tensor([-1.0]))
    assert ema.real.item() == pytest.approx(2.0) and ema.fake.item() == pytest.approx(-1.0)
    ema.update(torch.tensor([4.0]), torch.tensor([1.0]))
    # biased: 0.9·0.1·2 + 0.1·4 = 0.58, corrected by 1 − 0.9² = 0.19.
    assert ema.real.item() == pytest.approx(0.58 / 0.19)
    assert set(ema.state_dict()) == {"biased_real", "biased_fake", "num_updates"}


def test_r1_penalty_hand_value_and_trains_the_discriminator():
    x = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]], [[[0.5, 0.0], [0.0, 0.0]]]], requires_grad=True)  # (2, 1, 2, 2)
    w = torch.tensor(3.0, requires_grad=True)
    logits = w * (x**2).sum(dim=(1, 2, 3))  # ∇_x = 2 w x  -> ‖∇‖² = 4 w² ‖x‖²
    penalty = r1_penalty(logits, x)
    expected = (4 * 9 * 6.0 + 4 * 9 * 0.25) / 2
    assert penalty.item() == pytest.approx(expected)
    penalty.backward()  # d/dw of mean 4 w² ‖x‖² = 8 w · mean ‖x‖²
    assert w.grad.item() == pytest.approx(8 * 3 * (6.0 + 0.25) / 2)


# --- Adaptive weight --------------------------------------------------------------------------------------


def test_adaptive_weight_matches_manual_autograd():
    torch.manual_seed(0)
    last = torch.randn(3, 4, requires_grad=True)
    x = torch.randn(5, 3)
    out = x @ last
    rec = out.abs().mean()
    g = -(out.tanh()).mean() * 0.01

    weight = adaptive_generator_weight(rec, g, last, max_weight=1e4, delta=1e-4)

    # Manual: fresh graphs, no shared state.
    l2 = last.detach().clone().requires_grad_(True)
    (x @ l2).abs().mean().backward()
    rec_norm = l2.grad.norm().item()
    l3 = last.detach().clone().requires_grad_(True)
    (-((x @ l3).tanh()).mean() * 0.01).backward()
    g_norm = l3.grad.norm().item()
    assert weight.item() == pytest.approx(rec_norm / (g_norm + 1e-4), rel=1e-5)
    assert not weight.requires_grad
    # retain_graph: the total loss can still be backpropagated afterwards, and λ contributes no gradient.
    (rec + weight * g).backward()
    assert last.grad is not None


def test_adaptive_weight_is_clamped():
    last = torch.randn(2, 2, requires_grad=True)
    rec = (last**2).sum()
    g = 0.0 * last.sum()  # a vanishing GAN gradient -> ratio ‖∇rec‖ / δ, far above the clamp
    assert adaptive_generator_weight(rec, g, last, max_weight=7.0).item() == 7.0


# --- Warm-up and ramp -------------------------------------------------------------------------------------


def test_ramp_values_at_chosen_steps():
    values = {
        step: gan_ramp_factor(step, disc_start=100, ramp_steps=10) for step in (0, 99, 100, 104, 109, 110, 10_000)
    }
    assert values == {0: 0.0, 99: 0.0, 100: 0.1, 104: 0.5, 109: 1.0, 110: 1.0, 10_000: 1.0}
    # ramp_steps = 0 is taming's step function.
    assert [gan_ramp_factor(s, 100, 0) for s in (99, 100)] == [0.0, 1.0]


def test_discriminator_pretrains_before_the_generator_listens():
    assert [discriminator_trains(s, disc_start=100, pretrain_steps=20) for s in (0, 79, 80, 100)] == [
        False,
        False,
        True,
        True,
    ]
    config = VQGANLossConfig(disc_start=100, disc_pretrain_steps=20, disc_ramp_steps=10)
    assert config.trains_discriminator(80) and config.gan_factor(80) == 0.0
    assert config.gan_factor(100) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"gan_loss_type": "wgan"}, "gan_loss_type"),
        ({"reconstruction_loss_type": "huber"}, "reconstruction_loss_type"),
        ({"disc_weight": -1.0}, "disc_weight"),
        ({"disc_ramp_steps": -5}, "disc_ramp_steps"),
        ({"lecam_ema_decay": 1.0}, "lecam_ema_decay"),
    ],
)
def test_loss_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        VQGANLossConfig(**kwargs)


def test_loss_config_speaks_the_model_config_vocabulary():
    # "mse" / "l1" as in `BaseVQConfig.reconstruction_loss_type`; the old "l2" still works and becomes "mse".
    assert VQGANLossConfig(reconstruction_loss_type="mse").reconstruction_loss_type == "mse"
    assert VQGANLossConfig(reconstruction_loss_type="l2").reconstruction_loss_type == "mse"
    assert VQGANLossConfig().reconstruction_loss_type == "l1"
    a, b = torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0])
    assert reconstruction_loss(a, b, "mse").item() == reconstruction_loss(a, b, "l2").item() == pytest.approx(2.5)


# --- The assembled objective ------------------------------------------------------------------------------


def test_generator_step_leaves_discriminator_gradients_untouched():
    model, disc = tiny_vqgan(), tiny_discriminator()
    images = photo_crops()
    loss_fn = VQGANLoss(VQGANLossConfig(disc_start=0, disc_ramp_steps=0, perceptual_weight=0.0))
    out = model(images)
    g = loss_fn.generator_loss(
        images,
        out.reconstruction,
        discriminator=disc,
        step=0,
        last_layer=model.get_last_layer(),
        quantizer_loss=out.quantizer_loss,
    )
    assert g.gan_weight.item() > 0 and g.gan_loss.item() != 0
    g.loss.backward()
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())  # not toggled off either
    grads = [p.grad for p in model.decoder.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)


def test_discriminator_step_leaves_generator_gradients_untouched():
    model, disc = tiny_vqgan(), tiny_discriminator()
    images = photo_crops()
    loss_fn = VQGANLoss(VQGANLossConfig(disc_start=0, perceptual_weight=0.0, lecam_weight=0.1, r1_weight=1.0))
    out = model(images)
    d = loss_fn.discriminator_loss(images, out.reconstruction, discriminator=disc)
    assert d.lecam_loss.item() >= 0 and d.r1_loss.item() > 0
    d.loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters())
    assert not images.requires_grad  # the R1 input is a detached copy


def test_frozen_discriminator_logits_equal_the_normal_forward():
    disc = tiny_discriminator().eval()
    images = photo_crops()
    torch.testing.assert_close(frozen_discriminator_logits(disc, images), disc(images).logits)


def test_generator_loss_composition():
    model, disc = tiny_vqgan(), tiny_discriminator()
    images = photo_crops()
    config = VQGANLossConfig(disc_start=10, disc_ramp_steps=4, perceptual_weight=0.0, reconstruction_weight=2.0)
    loss_fn = VQGANLoss(config)
    out = model(images)
    kwargs = dict(discriminator=disc, last_layer=model.get_last_layer(), quantizer_loss=out.quantizer_loss)

    before = loss_fn.generator_loss(images, out.reconstruction, step=9, **kwargs)
    rec = F.l1_loss(out.reconstruction, images)
    assert before.gan_weight.item() == 0.0 and before.gan_loss.item() == 0.0
    torch.testing.assert_close(before.loss, 2.0 * rec + out.quantizer_loss)

    during = loss_fn.generator_loss(images, out.reconstruction, step=11, **kwargs)  # ramp 2/4
    g = hinge_generator_loss(disc(out.reconstruction).logits)
    lam = adaptive_generator_weight(2.0 * rec, g, model.get_last_layer())
    torch.testing.assert_close(during.gan_weight, lam * 0.8 * 0.5)
    torch.testing.assert_close(during.loss, 2.0 * rec + lam * 0.8 * 0.5 * g + out.quantizer_loss)
    assert set(during.to_logs()) >= {"loss", "gan_weight", "gan_factor"} and during.to_logs()["gan_factor"] == 0.5


@pytest.mark.parametrize("loss_type", ["l1", "mse"])
def test_generator_loss_reuses_the_models_reconstruction_loss(loss_type):
    """`output.reconstruction_loss` (the model's fp32 mean over every pixel) is exactly what generator_loss would
    compute, so passing it changes neither the loss nor any gradient, with the GAN term and adaptive weight on."""
    model, disc = tiny_vqgan(reconstruction_loss_type=loss_type), tiny_discriminator()
    images = photo_crops()
    config = VQGANLossConfig(
        reconstruction_loss_type=model.config.reconstruction_loss_type, disc_start=0, perceptual_weight=0.0
    )
    loss_fn = VQGANLoss(config)

    def run(reuse: bool):
        model.zero_grad(set_to_none=True)
        out = model(images)
        g = loss_fn.generator_loss(
            images,
            out.reconstruction,
            discriminator=disc,
            step=5,
            last_layer=model.get_last_layer(),
            quantizer_loss=out.quantizer_loss,
            reconstruction_loss=out.reconstruction_loss if reuse else None,
        )
        g.loss.backward()
        return g, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    recomputed, grads_recomputed = run(reuse=False)
    reused, grads_reused = run(reuse=True)
    assert reused.reconstruction_loss.dtype == recomputed.reconstruction_loss.dtype == torch.float32
    for name in ("loss", "reconstruction_loss", "gan_loss", "gan_weight"):
        assert torch.equal(getattr(reused, name), getattr(recomputed, name)), name
    assert len(grads_reused) == len(grads_recomputed) > 0
    for a, b in zip(grads_reused, grads_recomputed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # Under CPU autocast the recomputed loss of a bf16 reconstruction is fp32 and equals the model's explicit
    # fp32 computation (`F.*_loss(reconstruction.float(), pixel_values.float())`).
    reconstruction = model(images).reconstruction.detach().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = reconstruction_loss(reconstruction, images, loss_type)
    model_style = (F.l1_loss if loss_type == "l1" else F.mse_loss)(reconstruction.float(), images.float())
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, model_style)

    per_image = (reconstruction.float() - images).abs().mean(dim=(1, 2, 3))
    with pytest.raises(ValueError, match="reconstruction_loss"):
        loss_fn.generator_loss(images, reconstruction, discriminator=disc, step=0, reconstruction_loss=per_image)


def test_generator_loss_under_no_grad_reports_without_adaptive_weight():
    model, disc = tiny_vqgan(), tiny_discriminator()
    images = photo_crops()
    loss_fn = VQGANLoss(VQGANLossConfig(disc_start=0, perceptual_weight=0.0))
    with torch.no_grad():
        out = model(images)
        g = loss_fn.generator_loss(
            images, out.reconstruction, discriminator=disc, step=5, last_layer=model.get_last_layer()
        )
    assert g.gan_weight.item() == 0.0 and torch.isfinite(g.loss)


def test_missing_pieces_raise_clear_errors():
    with pytest.raises(ValueError, match="perceptual"):
        VQGANLoss(VQGANLossConfig())
    loss_fn = VQGANLoss(VQGANLossConfig(disc_start=0, perceptual_weight=0.0))
    model = tiny_vqgan()
    images = photo_crops()
    out = model(images)
    with pytest.raises(ValueError, match="discriminator"):
        loss_fn.generator_loss(images, out.reconstruction, discriminator=None, step=0)
    with pytest.raises(ValueError, match="last_layer"):
        loss_fn.generator_loss(images, out.reconstruction, discriminator=tiny_discriminator(), step=0)


# --- Head and loss agree ----------------------------------------------------------------------------------


def test_logit_head_lets_the_hinge_loss_reach_zero_where_a_sigmoid_head_cannot():
    """With a Sigmoid head (diffusers' VQGAN example) σ ∈ (0, 1), so relu(1 − σ) > 0 and relu(1 + σ) > 1: the
    hinge discriminator loss is above ½ whatever the discriminator learns. Our head returns logits, and a few
    steps on real photo crops vs. blurred ones take the loss well under that floor."""
    torch.manual_seed(0)
    disc = tiny_discriminator()
    assert isinstance(disc.main[-1], torch.nn.Conv2d)  # the last module is the conv: no activation
    real = photo_crops(4)
    fake = F.avg_pool2d(real, 5, stride=1, padding=2)  # blurry "reconstructions"
    any_sigmoid = torch.sigmoid(torch.randn(1000) * 10)
    assert hinge_discriminator_loss(any_sigmoid, any_sigmoid).item() > 0.5

    optimizer = torch.optim.Adam(disc.parameters(), lr=2e-3)
    for _ in range(60):
        loss = hinge_discriminator_loss(disc(real).logits, disc(fake).logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2
    with torch.no_grad():
        assert disc(real).logits.mean() > 0.5 and disc(fake).logits.mean() < -0.5
