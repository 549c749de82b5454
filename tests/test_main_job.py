"""The main job's objective schedule: short runs leave the GAN off and say so; the full objective is one flag away."""

import json
import logging

import pytest

from hf_vq.training import parse_args, train
from hf_vq.training.objective import GAN_MIN_STEPS, build_objective
from hf_vq.training.tokenizer import TokenizerTask

from helpers import tiny_train_flags


def schedule(args, steps):
    """(steps at which the generator's GAN term is on, steps at which the discriminator trains)."""
    model = TokenizerTask(args).build_models()[0].module
    config = build_objective(args, model, max_train_steps=steps).config
    gan = [s for s in range(steps) if config.gan_factor(s) > 0]
    disc = [s for s in range(steps) if config.trains_discriminator(s)]
    return gan, disc


def test_a_short_run_leaves_the_gan_off_and_says_how_to_turn_it_on(tmp_path, caplog):
    args = parse_args(tiny_train_flags(tmp_path))
    with caplog.at_level(logging.INFO, logger="hf_vq.training.objective"):
        gan, disc = schedule(args, 400)
    assert gan == [] and disc == []  # neither the generator's GAN term nor the discriminator ever runs
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "GAN stays off" in message and "--discriminator-start N (e.g. 200, half the run)" in message


def test_one_flag_gives_the_full_objective_on_a_short_run(tmp_path):
    gan, disc = schedule(parse_args(tiny_train_flags(tmp_path, "--discriminator-start", "200")), 400)
    assert gan[0] == 200 and gan[-1] == 399
    assert disc[0] == 100  # the discriminator pre-trains a quarter of the run before the GAN term switches on


def test_a_long_run_switches_the_gan_on_by_itself(tmp_path):
    steps = 2 * GAN_MIN_STEPS
    gan, disc = schedule(parse_args(tiny_train_flags(tmp_path)), steps)
    assert gan[0] == 10_000 and disc[0] == 8_000  # the objective's own defaults (taming's disc_start)


@pytest.mark.slow
def test_a_gan_off_run_saves_no_untrained_discriminator_and_its_card_says_why(tmp_path):
    output = tmp_path / "run"
    extra = ("--max-train-steps", "2", "--checkpointing-steps", "0", "--eval-steps", "0", "--image-logging-steps", "0")
    assert train(parse_args(tiny_train_flags(output, *extra))) == 0
    assert (output / "model.safetensors").is_file()
    assert not (output / "discriminator").exists()  # random weights must not pass for a trained discriminator
    losses = json.loads((output / "card_info.json").read_text())["training"]["losses"]
    assert "GAN off" in losses and "--discriminator-start" in losses


@pytest.mark.parametrize(
    "extra, expected",
    [((), 0.9), (("--discriminator-start", "200"), 0.5), (("--adam-beta1", "0.7"), 0.7)],
    ids=["no GAN: Adam's 0.9", "GAN: taming's 0.5", "given: kept"],
)
def test_adam_beta1_follows_the_gan_unless_given(tmp_path, extra, expected):
    import torch

    args = parse_args(tiny_train_flags(tmp_path, *extra))
    task = TokenizerTask(args)
    task.build_models()
    task.build_objective(max_train_steps=400, device=torch.device("cpu"))
    # Resolved before the loop builds the optimizers (which training_args.json records); `args` stays as given.
    assert task.adam_betas(args)[0] == expected
    assert args.adam_beta1 == parse_args(tiny_train_flags(tmp_path, *extra)).adam_beta1
