"""The training loop's steps, run in-process on tiny models: the NaN/inf guard, bad records, the stop message."""

import json
import logging

import pytest
import torch
from torch import nn

from hf_vq.training import parse_args, train
from hf_vq.training.loop import build_optimizers, run_arguments
from hf_vq.training.step import optimizer_step, train_step
from hf_vq.training.task import Task, TaskStep
from hf_vq.training.tokenizer import TokenizerTask

from helpers import TINY_DISCRIMINATOR, tiny_train_flags, write_mixed_folder
from helpers import TINY_VQGAN as TINY_MODEL


def snapshot(*modules):
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def test_a_non_finite_batch_leaves_every_weight_unchanged(tmp_path):
    from accelerate import Accelerator

    args = parse_args(tiny_train_flags(tmp_path, "--discriminator-start", "0", "--lr-warmup-steps", "0"))
    accelerator = Accelerator(cpu=True)
    task = TokenizerTask(args)
    trainables = task.build_models()
    task.build_objective(max_train_steps=10, device=accelerator.device)
    objective = task.objective
    args = run_arguments(args, task)  # the betas the task resolved, as the loop builds the optimizers with
    optimizers, schedulers = build_optimizers(args, trainables, 10, 1)
    assert [opt.defaults["betas"] for opt in optimizers] == [(0.5, 0.9)] * 2  # the GAN trains: taming's beta1
    model, discriminator, *optimizers = accelerator.prepare(task.model, task.discriminator, *optimizers)
    named = {"generator": model, "discriminator": discriminator}
    assert objective.config.trains_discriminator(3) and objective.config.gan_factor(3) > 0  # every term is on

    before = snapshot(model, discriminator)
    # Finite inputs whose activations overflow: the loss is NaN/inf, as after a bad batch or a diverged step.
    poisoned = {"pixel_values": torch.full((2, 3, 32, 32), 3e38)}
    out = train_step(accelerator, task, [model, discriminator], poisoned, step=3)
    assert not out.finite
    stepped, _ = optimizer_step(accelerator, args, named, optimizers, schedulers, out.finite)
    assert not stepped
    for old, new in zip(before, snapshot(model, discriminator)):
        assert [k for k in old if not torch.equal(old[k], new[k])] == []
    assert all(p.grad is None for p in [*model.parameters(), *discriminator.parameters()])

    good = {"pixel_values": torch.rand(2, 3, 32, 32) * 2 - 1}
    out = train_step(accelerator, task, [model, discriminator], good, step=3)
    assert out.finite and {"loss", "gan_loss", "adaptive_weight", "d_loss", "codebook_usage"} <= set(out.logs)
    stepped, norms = optimizer_step(accelerator, args, named, optimizers, schedulers, out.finite)
    assert stepped and norms["generator"] > 0 and norms["discriminator"] > 0
    after = snapshot(model, discriminator)
    for old, new in zip(before, after):
        assert any(not torch.equal(old[k], new[k]) for k in old if old[k].is_floating_point())


def test_optimizers_use_the_fused_adamw_kernel_and_take_the_same_step(tmp_path):
    """CPU and CUDA get torch's fused AdamW; its update is the per-tensor AdamW's to rounding."""
    flags = ("--adam-weight-decay", "0.01", "--adam-beta1", "0.5", "--lr-warmup-steps", "0")  # no objective built
    args = parse_args(tiny_train_flags(tmp_path, *flags))
    trainables = TokenizerTask(args).build_models()
    model = trainables[0].module
    start = [p.detach().clone() for p in model.parameters()]
    optimizers, _ = build_optimizers(args, trainables, 10, 1, "cpu")
    assert [opt.defaults["fused"] for opt in optimizers] == [True, True]
    assert build_optimizers(args, trainables, 10, 1, "mps")[0][0].defaults["fused"] is None

    twins = [p.clone().requires_grad_(True) for p in start]
    plain = torch.optim.AdamW(twins, **{k: optimizers[0].defaults[k] for k in ("lr", "betas", "eps", "weight_decay")})
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(model.parameters(), twins):
            p.grad = torch.randn(p.shape, generator=generator)
            q.grad = p.grad.clone()
        optimizers[0].step()
        plain.step()
    for p, q, p0 in zip(model.parameters(), twins, start):
        assert not torch.equal(p, p0)
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


class RunningMean(nn.Module):
    """No `quantize`: a linear layer and a buffer that every forward updates, as a norm's running statistics do."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.register_buffer("running_mean", torch.zeros(2))
        self.register_buffer("constant", torch.ones(2), persistent=False)  # not state: never copied

    def forward(self, x):
        with torch.no_grad():
            self.running_mean.lerp_(x.mean(0), 0.5)
        return self.linear(x)


class RunningMeanTask(Task):
    def train_step(self, accelerator, models, batch, step):
        loss = models[0](batch["x"]).pow(2).mean()
        return TaskStep([loss], {"loss": loss}, examples=batch["x"].shape[0])


def test_the_guard_restores_the_buffers_of_any_model_after_a_non_finite_step():
    from accelerate import Accelerator

    from hf_vq.training.step import forward_state

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(RunningMean())
    state = [model.running_mean, model.linear.weight, model.linear.bias]  # the module with state, whole
    assert [t.data_ptr() for t in forward_state([model])] == [t.data_ptr() for t in state]
    before = snapshot(model)[0]
    out = train_step(accelerator, RunningMeanTask(), [model], {"x": torch.full((3, 2), float("inf"))}, step=0)
    assert not out.finite
    assert all(torch.equal(before[k], v) for k, v in snapshot(model)[0].items())
    assert all(p.grad is None for p in model.parameters())

    out = train_step(accelerator, RunningMeanTask(), [model], {"x": torch.ones(3, 2)}, step=0)
    assert out.finite and out.examples == 3 and float(out.logs["loss"]) > 0
    assert torch.equal(model.running_mean, torch.full((2,), 0.5))
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_diverging_run_stops_and_points_at_the_last_good_checkpoint(tmp_path, caplog):
    extra = (
        "--learning-rate 1e30 --lr-warmup-steps 0 --lr-scheduler constant_with_warmup --max-train-steps 30 "
        "--checkpointing-steps 1 --max-consecutive-nonfinite 3 --max-grad-norm 0 --no-use-ema --eval-steps 0 "
        "--image-logging-steps 0"
    )
    flags = tiny_train_flags(tmp_path, *extra.split())
    with caplog.at_level(logging.INFO, logger="hf_vq.training.loop"):
        assert train(parse_args(flags)) == 1
    err = caplog.text  # the stop message is logged (stderr under the CLI)
    assert "3 steps in a row had a non-finite loss or gradient" in err
    assert "Last good checkpoint: " + str(tmp_path / "checkpoint-1") in err
    assert not (tmp_path / "config.json").exists()  # no final model from a diverged run


@pytest.mark.slow
def test_training_on_a_folder_with_bad_files_skips_and_counts_them(tmp_path, caplog):
    good, bad = write_mixed_folder(tmp_path / "images")
    extra = ["--max-train-steps", "2", "--checkpointing-steps", "0", "--eval-steps", "0", "--image-logging-steps", "0"]
    data = ("--dataset-name", str(tmp_path / "images"), "--train-batch-size", str(good + bad))
    flags = tiny_train_flags(tmp_path / "out", *data, *extra)
    with caplog.at_level(logging.INFO, logger="hf_vq.training.monitoring"):
        assert train(parse_args(flags)) == 0
    out = caplog.text  # the end-of-run summary is logged
    # Each step reads the whole folder (one batch of good + bad records): 2 steps, 2 x 2 unreadable records.
    assert f"{2 * good} images, {2 * bad} unreadable records skipped" in out
    assert (tmp_path / "out" / "model.safetensors").is_file()
    # No held-out split in a flat folder: the grid shows training images, and the card says so.
    assert (tmp_path / "out" / "samples.png").is_file()
    assert "Training images" in json.loads((tmp_path / "out" / "card_info.json").read_text())["grid_caption"]


@pytest.mark.slow
def test_decoder_only_fine_tuning_from_a_saved_folder(tmp_path):
    from safetensors.torch import load_file

    from hf_vq import VQGANConfig, VQGANModel
    from hf_vq.modeling.configuration_discriminator import VQGANDiscriminatorConfig
    from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator

    base = tmp_path / "base"
    # The codebook hf-vq trains by default: EMA updates, k-means start, dead-code restarts, each of which would move
    # codes outside the gradient that --freeze-codebook stops.
    ema = {"codebook_update": "ema", "kmeans_init": True, "dead_code_restart": True, "codebook_usage_window": 1}
    VQGANModel(VQGANConfig(**{**TINY_MODEL, **ema})).save_pretrained(base)
    VQGANDiscriminator(VQGANDiscriminatorConfig(**TINY_DISCRIMINATOR)).save_pretrained(base / "discriminator")
    run = (
        "--freeze-encoder --freeze-codebook --resolution 32 --train-batch-size 2 --perceptual-weight 0 "
        "--dataloader-num-workers 0 --report-to none --max-train-steps 2 --lr-warmup-steps 0 --no-use-ema "
        "--discriminator-start 0 --num-eval-images 2 --checkpointing-steps 0"
    )
    flags = ["--init-from", str(base), "--output-dir", str(tmp_path / "tuned"), *run.split()]
    assert train(parse_args(flags)) == 0
    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(tmp_path / "tuned" / "model.safetensors"))
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv.", "quantize.embedding"))]
    assert "quantize.embedding.weight" in frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    # The discriminator was loaded from base/discriminator (two small steps away from it, not a fresh init).
    d_before = load_file(str(base / "discriminator" / "model.safetensors"))
    d_after = load_file(str(tmp_path / "tuned" / "discriminator" / "model.safetensors"))
    assert d_before.keys() == d_after.keys() and any(not torch.equal(d_before[k], d_after[k]) for k in d_before)
    assert max(float((d_before[k] - d_after[k]).abs().max()) for k in d_before) < 5e-3
    card = json.loads((tmp_path / "tuned" / "card_info.json").read_text())
    assert "encoder and codebook frozen" in card["training"]["fine_tuned_from"]


@pytest.mark.slow
def test_vqvae_trains_with_its_own_objective_and_no_discriminator(tmp_path):
    from hf_vq import VQVAEModel

    tiny_vqvae = {"hidden_channels": 8, "residual_hidden_channels": 4, "latent_channels": 4, "num_vq_embeddings": 16}
    extra = ["--max-train-steps", "2", "--checkpointing-steps", "0", "--lr-warmup-steps", "0"]
    flags = tiny_train_flags(tmp_path, *extra, model_type="vqvae", model_config=tiny_vqvae)
    assert train(parse_args(flags)) == 0
    model = VQVAEModel.from_pretrained(tmp_path)
    assert model.config.kmeans_init  # new models get the recommended quantizer options
    assert not (tmp_path / "discriminator").exists()
    info = json.loads((tmp_path / "card_info.json").read_text())
    assert info["training"]["losses"].startswith("MSE + codebook + commitment")
    assert {"psnr", "ssim", "codebook_usage"} <= set(info["results"]["metrics"])


@pytest.mark.slow
def test_lecam_and_r1_flags_reach_the_objective_and_the_card_has_the_rate_used(tmp_path):
    from hf_vq.training.objective import build_objective

    extra = (
        "--lecam-weight 0.001 --lecam-ema-decay 0.9 --r1-weight 0.5 --scale-lr --discriminator-start 0 "
        "--max-train-steps 2 --checkpointing-steps 2 --eval-steps 0 --image-logging-steps 0 --lr-warmup-steps 0"
    )
    flags = tiny_train_flags(tmp_path, *extra.split())
    args = parse_args(flags)
    config = build_objective(args, TokenizerTask(args).build_models()[0].module, max_train_steps=2).config
    assert (config.lecam_weight, config.lecam_ema_decay, config.r1_weight) == (0.001, 0.9, 0.5)
    assert train(args) == 0
    card = json.loads((tmp_path / "card_info.json").read_text())["training"]
    assert card["learning_rate"] == pytest.approx(1e-3 * 2)  # --scale-lr: per image of the batch of 2
    # --adam-beta1 unset: the GAN trains, so taming's 0.5; recorded as used, while the caller's `args` stay as given.
    assert json.loads((tmp_path / "training_args.json").read_text())["adam_beta1"] == 0.5 and args.adam_beta1 is None
    assert "0.001·LeCam (decay 0.9)" in card["losses"] and "0.5·R1" in card["losses"]
    from safetensors.torch import load_file

    anchors = load_file(tmp_path / "checkpoint-2" / "task_state.safetensors")  # safetensors, not a pickle (#17)
    assert int(anchors["0.num_updates"]) == 2  # the LeCam moving averages are checkpointed with the run
