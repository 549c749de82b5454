"""Converting taming-transformers / LDM checkpoints, checked against the real taming modules (taming-transformers
0.0.1, installed with --no-deps: its Encoder, Decoder, VectorQuantizer and NLayerDiscriminator import with torch)."""

import argparse
import json

import pytest
import torch
import yaml

taming_model = pytest.importorskip("taming.modules.diffusionmodules.model")
from taming.modules.discriminator.model import NLayerDiscriminator, weights_init
from taming.modules.vqvae.quantize import VectorQuantizer

from hf_vq import VQGANModel
from hf_vq.cli import main as cli_main
from hf_vq.commands.convert import main as convert_main
from hf_vq.integrations.taming import convert_taming_checkpoint, load_checkpoint_state_dict

TINY_DD = dict(
    double_z=False,
    z_channels=32,
    resolution=32,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 2],
    num_res_blocks=1,
    attn_resolutions=[16],
    dropout=0.0,
)  # taming's GroupNorm(32) needs widths % 32 == 0
F16_DD = dict(
    double_z=False,
    z_channels=256,
    resolution=256,
    in_channels=3,
    out_ch=3,
    ch=128,
    ch_mult=[1, 1, 2, 2, 4],
    num_res_blocks=2,
    attn_resolutions=[16],
    dropout=0.0,
)  # taming's ImageNet f16 VQ-GAN


class TamingVQGAN(torch.nn.Module):
    """taming.models.vqgan.VQModel without Lightning: the same submodules, names and forward."""

    def __init__(self, dd, n_embed, embed_dim, disc_ndf=16, disc_layers=2):
        super().__init__()
        self.encoder = taming_model.Encoder(**dd)
        self.decoder = taming_model.Decoder(**dd)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = torch.nn.Conv2d(dd["z_channels"], embed_dim, 1)
        self.post_quant_conv = torch.nn.Conv2d(embed_dim, dd["z_channels"], 1)
        self.loss = torch.nn.Module()
        self.loss.discriminator = NLayerDiscriminator(3, disc_ndf, disc_layers).apply(weights_init)
        self.config = {
            "model": {
                "target": "taming.models.vqgan.VQModel",
                "params": {
                    "embed_dim": embed_dim,
                    "n_embed": n_embed,
                    "ddconfig": dd,
                    "lossconfig": {
                        "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                        "params": {"disc_start": 10, "disc_ndf": disc_ndf, "disc_num_layers": disc_layers},
                    },
                },
            }
        }

    def forward(self, x):
        h = self.quant_conv(self.encoder(x))
        quant, loss, (_, _, indices) = self.quantize(h)
        return self.decoder(self.post_quant_conv(quant)), loss, indices.view(x.shape[0], *h.shape[2:])

    def write(self, tmp_path, state_dict=None, config=None, name="model"):
        """A Lightning-style checkpoint (tensors and plain types only) and its yaml."""
        state_dict = dict(self.state_dict() if state_dict is None else state_dict)
        state_dict["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(4, 3, 3, 3)  # the LPIPS copy
        ckpt, config_path = tmp_path / f"{name}.ckpt", tmp_path / f"{name}.yaml"
        torch.save(
            {"state_dict": state_dict, "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8"}, ckpt
        )
        config_path.write_text(yaml.safe_dump(config or self.config))
        return ckpt, config_path


@pytest.fixture(scope="module")
def tiny_taming():
    torch.manual_seed(0)
    return TamingVQGAN(TINY_DD, n_embed=64, embed_dim=16).eval()


@pytest.fixture(scope="module")
def tiny_converted(tiny_taming, tmp_path_factory):
    ckpt, config = tiny_taming.write(tmp_path_factory.mktemp("taming"))
    return convert_taming_checkpoint(ckpt, config)


def _images(size=32, batch=2):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_config_maps_taming_yaml(tiny_converted):
    config = tiny_converted.model.config
    assert config.block_out_channels == [32, 64]
    assert config.down_block_types == ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]  # attention at 16 px
    assert config.up_block_types == ["AttnUpDecoderBlock2D", "UpDecoderBlock2D"]
    assert (config.num_vq_embeddings, config.vq_embed_dim, config.latent_channels) == (64, 16, 32)
    assert config.beta_placement == "codebook" and config.commitment_cost == 0.25
    assert tiny_converted.dropped_keys == ["loss.perceptual_loss.net.slice1.0.weight"]


def test_tiny_parity_indices_reconstructions_and_losses(tiny_taming, tiny_converted):
    model = tiny_converted.model
    x = _images()
    with torch.no_grad():
        ref_rec, ref_loss, ref_idx = tiny_taming(x)
        ours = model(x)
    assert torch.equal(ours.indices, ref_idx)
    # fp32: taming feeds the decoder z + (e - z) instead of e and uses x*sigmoid(x) instead of the fused SiLU,
    # so rounding differs (measured 2.4e-5 on outputs of magnitude ~2.5); fp64 shows the mapping is exact.
    assert (ours.reconstruction - ref_rec).abs().max() < 1e-4
    taming64, model64 = TamingVQGAN(TINY_DD, 64, 16), VQGANModel(model.config)
    taming64.load_state_dict(tiny_taming.state_dict())
    model64.load_state_dict(model.state_dict())
    taming64.double().eval(), model64.double().eval()
    with torch.no_grad():
        ref_rec, ref_loss, ref_idx = taming64(x.double())
        ours = model64(x.double())
    assert torch.equal(ours.indices, ref_idx)
    assert (ours.reconstruction - ref_rec).abs().max() < 1e-10
    assert torch.allclose(ours.quantizer_loss.double(), ref_loss, rtol=1e-6, atol=0)  # our loss is computed in fp32


def test_beta_placement_reproduces_taming_quantizer_gradients(tiny_taming, tiny_converted):
    # The loss *values* of both placements are equal (‖sg[z]−e‖² = ‖z−sg[e]‖²); the gradients tell them apart.
    latents = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(2))
    h_ref, h_ours = latents.clone().requires_grad_(), latents.clone().requires_grad_()
    tiny_taming.quantize.embedding.weight.grad = None
    tiny_taming.quantize(h_ref)[1].backward()
    quantize = tiny_converted.model.quantize
    quantize.embedding.weight.grad = None
    quantize(h_ours, return_dict=True).loss.backward()
    assert torch.allclose(h_ours.grad, h_ref.grad, atol=1e-9)
    assert torch.allclose(quantize.embedding.weight.grad, tiny_taming.quantize.embedding.weight.grad, atol=1e-9)
    assert quantize.embedding.weight.grad.abs().sum() > 0


def test_discriminator_carried_over(tiny_taming, tiny_converted):
    discriminator = tiny_converted.discriminator
    assert discriminator is not None and discriminator.config.norm_type == "batch"
    x = _images()
    with torch.no_grad():
        assert torch.equal(discriminator(x).logits, tiny_taming.loss.discriminator(x))


def test_ldm_layout_prefix_and_ema(tiny_taming, tmp_path):
    # A latent-diffusion checkpoint: first_stage_model.* plus the diffusion model, LitEma shadows without dots.
    state = {f"first_stage_model.{k}": v for k, v in tiny_taming.state_dict().items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(3)
    state["first_stage_model.model_ema.decay"] = torch.tensor(0.9999)
    state["first_stage_model.model_ema.encoderconv_inweight"] = torch.full_like(
        tiny_taming.encoder.conv_in.weight, 0.5
    )
    first_stage = tiny_taming.config["model"]
    config = {
        "model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {"first_stage_config": first_stage}}
    }
    ckpt, config_path = tiny_taming.write(tmp_path, state_dict=state, config=config)
    raw = convert_taming_checkpoint(ckpt, config_path)
    assert torch.equal(raw.model.encoder.conv_in.weight, tiny_taming.encoder.conv_in.weight)
    assert "model.diffusion_model.input_blocks.0.0.weight" in raw.dropped_keys
    ema = convert_taming_checkpoint(ckpt, config_path, use_ema=True)
    assert torch.equal(ema.model.encoder.conv_in.weight, torch.full_like(tiny_taming.encoder.conv_in.weight, 0.5))
    assert torch.equal(ema.model.decoder.conv_out.weight, tiny_taming.decoder.conv_out.weight)  # no shadow: raw


def test_cli_writes_a_loadable_folder_with_card(tiny_taming, tmp_path):
    ckpt, config = tiny_taming.write(tmp_path, name="last")
    out = tmp_path / "converted"
    assert convert_main(["taming", str(ckpt), "--config", str(config), str(out)]) == 0
    assert (out / "discriminator" / "config.json").is_file()
    assert "last.ckpt" in (out / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["beta_placement"] == "codebook"
    model = VQGANModel.from_pretrained(out).eval()
    x = _images()
    with torch.no_grad():
        assert torch.equal(model.encode_to_indices(x), tiny_taming(x)[2])


def test_unknown_layout_and_target_are_clear_errors(tiny_taming, tmp_path):
    state = dict(tiny_taming.state_dict())
    state["encoder.down.0.block.0.temb_proj.weight"] = torch.zeros(32, 4)  # a diffusion UNet's key
    ckpt, config = tiny_taming.write(tmp_path, state_dict=state)
    with pytest.raises(ValueError, match="Unknown checkpoint layout.*temb_proj"):
        convert_taming_checkpoint(ckpt, config)
    gumbel = json.loads(json.dumps(tiny_taming.config))
    gumbel["model"]["target"] = "taming.models.vqgan.GumbelVQ"
    with pytest.raises(ValueError, match="Unsupported first-stage model 'taming.models.vqgan.GumbelVQ'"):
        convert_taming_checkpoint(ckpt, gumbel)
    # A missing checkpoint is a user's error: `hf-vq`'s one error boundary says so (status 2, one paragraph).
    missing = ["convert", "taming", str(tmp_path / "missing.ckpt"), "--config", str(config), str(tmp_path / "o")]
    assert cli_main(missing) == 2


def test_pickled_objects_are_refused_with_a_strip_recipe(tmp_path):
    ckpt = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}, "hparams": argparse.Namespace(lr=1.0)}, ckpt)
    with pytest.raises(ValueError, match=r"weights_only=True.*\n.*weights_only=False.*state_dict"):
        load_checkpoint_state_dict(ckpt)


@pytest.mark.slow
def test_f16_imagenet_config_parity(tmp_path):
    """taming's f16 ImageNet VQ-GAN (76M parameters, K reduced to 1024 to keep it light), random weights."""
    torch.manual_seed(0)
    taming = TamingVQGAN(F16_DD, n_embed=1024, embed_dim=256).eval()
    converted = convert_taming_checkpoint(*taming.write(tmp_path))
    x = _images(size=32, batch=1)
    with torch.no_grad():
        ref_rec, ref_loss, ref_idx = taming(x)
        ours = converted.model(x)
    assert torch.equal(ours.indices, ref_idx)
    # fp32 rounding: 1.2e-5 at 32 px, where taming and diffusers.VQModel differ from each other by 1.0e-5
    assert (ours.reconstruction - ref_rec).abs().max() < 1e-4
    taming.double(), converted.model.double()
    with torch.no_grad():
        ref_rec, ref_loss, ref_idx = taming(x.double())
        ours = converted.model(x.double())
    assert torch.equal(ours.indices, ref_idx)
    assert (ours.reconstruction - ref_rec).abs().max() < 1e-10
    assert torch.allclose(ours.quantizer_loss.double(), ref_loss, rtol=1e-6, atol=0)  # our loss is computed in fp32


@pytest.mark.slow
def test_readme_convert_finetune_pipeline(tiny_taming, tmp_path):
    """The README example: convert a taming checkpoint, fine-tune it with `hf-vq train --init-from`, run it in LDM.

    The two commands run through `hf-vq`'s entry point in this process: as subprocesses, starting two interpreters
    (torch, transformers) was most of this test's time, and `test_training_cli.py` runs `hf-vq train` as one."""
    diffusers = pytest.importorskip("diffusers")
    ckpt, config = tiny_taming.write(tmp_path, name="last")
    assert cli_main(["convert", "taming", str(ckpt), "--config", str(config), str(tmp_path / "converted")]) == 0
    assert (
        cli_main(
            [
                "train",
                "--init-from",
                str(tmp_path / "converted"),
                "--output-dir",
                str(tmp_path / "finetuned"),
                "--max-train-steps",
                "1",
                "--train-batch-size",
                "2",
                "--resolution",
                "32",
                "--perceptual-weight",
                "0",
                "--report-to",
                "none",
                "--num-eval-images",
                "2",
                "--dataloader-num-workers",
                "0",
            ]
        )
        == 0
    )
    vqvae = VQGANModel.from_pretrained(tmp_path / "finetuned").eval()
    unet = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=16,
        out_channels=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
    )
    pipe = diffusers.LDMPipeline(vqvae=vqvae, unet=unet, scheduler=diffusers.DDIMScheduler())
    image = pipe(num_inference_steps=2, generator=torch.manual_seed(0)).images[0]
    assert image.size == (32, 32)
