"""Habits a newcomer brings (#18): `--model-config` changes fields of the default model, one spelling per flag in
`--help`, and the main job's command run twice (here its decision; the command itself, run again as a subprocess,
quiet and with one progress bar: tests/test_training_cli.py)."""

from __future__ import annotations

import json
import logging

from hf_vq.commands.train import repeat_main_job
from hf_vq.training import parse_args
from hf_vq.training.checkpointing import COMPLETE_MARKER
from hf_vq.training.tokenizer import new_model_config
from hf_vq.training.tokenizer_arguments import build_train_parser
from hf_vq.training.tokenizer_types import DEFAULT_VQGAN_CONFIG, DEFAULT_VQVAE_CONFIG, TOKENIZER_TYPES


def test_model_config_overrides_one_field_of_the_default_model(caplog):
    args = parse_args(["--model-config", '{"num_vq_embeddings": 4096}', "--resolution", "32"])
    with caplog.at_level(logging.INFO, logger="hf_vq.training.tokenizer"):
        config = new_model_config(TOKENIZER_TYPES["vqgan"], args)
    assert config.num_vq_embeddings == 4096
    assert config.block_out_channels == DEFAULT_VQGAN_CONFIG["block_out_channels"]  # not the 76M class default
    assert config.codebook_dim == DEFAULT_VQGAN_CONFIG["codebook_dim"] and config.sample_size == 32
    logged = json.loads(caplog.records[-1].getMessage().split(": ", 1)[1])
    assert logged["num_vq_embeddings"] == 4096 and logged["block_out_channels"] == [32, 64, 64]


def test_model_config_file_is_an_override_and_a_saved_config_is_taken_whole(tmp_path):
    (tmp_path / "fields.json").write_text('{"latent_channels": 8}')
    config = new_model_config(
        TOKENIZER_TYPES["vqvae"],
        parse_args(["--model-type", "vqvae", "--model-config", str(tmp_path / "fields.json")]),
    )
    assert config.latent_channels == 8 and config.hidden_channels == DEFAULT_VQVAE_CONFIG["hidden_channels"]
    saved = TOKENIZER_TYPES["vqvae"].config_class(hidden_channels=48)
    saved.save_pretrained(tmp_path / "saved")  # writes only the fields that differ from the class defaults
    args = parse_args(["--model-type", "vqvae", "--model-config", str(tmp_path / "saved")])
    config = new_model_config(TOKENIZER_TYPES["vqvae"], args)
    assert config.hidden_channels == 48
    assert config.latent_channels == TOKENIZER_TYPES["vqvae"].config_class().latent_channels


def test_help_shows_one_spelling_per_flag_and_both_still_parse():
    text = build_train_parser().format_help()
    assert "--model-type" in text and "--model_type" not in text and "--no_use_ema" not in text
    args = parse_args(["--model_type", "vqvae", "--no_use_ema", "--learning_rate", "1e-3"])
    assert args.model_type == "vqvae" and args.use_ema is False and args.learning_rate == 1e-3


def fake_checkpoint(folder, step: int, config) -> None:
    checkpoint = folder / f"checkpoint-{step}"
    (checkpoint / "model").mkdir(parents=True)
    config.to_json_file(str(checkpoint / "model" / "config.json"))
    (checkpoint / COMPLETE_MARKER).write_text("{}")


def test_the_main_job_run_twice_continues_or_moves_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = parse_args([])
    assert repeat_main_job(first) == (first, None)  # a first run: nothing to decide
    folder = tmp_path / "outputs" / "hf-vq-train"
    fake_checkpoint(folder, 200, new_model_config(TOKENIZER_TYPES["vqgan"], parse_args([])))
    given = parse_args([])
    args, message = repeat_main_job(given)
    assert "continuing it from checkpoint-200" in message
    assert args.resume_from_checkpoint == "latest" and args.output_dir == "outputs/hf-vq-train"
    assert given == parse_args([])  # the decision comes back as a copy: the parsed arguments stay as given

    args, message = repeat_main_job(parse_args(["--model-config", '{"num_vq_embeddings": 64}']))  # another model
    assert "an unfinished run of another model" in message
    assert args.output_dir == "outputs/hf-vq-train-2" and args.resume_from_checkpoint is None

    (folder / "config.json").write_text("{}")  # the earlier run finished
    (tmp_path / "outputs" / "hf-vq-train-2").mkdir()  # finished too: an empty folder would be reused
    (tmp_path / "outputs" / "hf-vq-train-2" / "config.json").write_text("{}")
    args, message = repeat_main_job(parse_args([]))
    assert (
        args.output_dir == "outputs/hf-vq-train-3" and "--resume-from-checkpoint latest --max-train-steps N" in message
    )
    for flags in (["--overwrite-output-dir"], ["--output-dir", "elsewhere"], ["--resume-from-checkpoint", "latest"]):
        args, message = repeat_main_job(parse_args(flags))
        assert message is None and args.output_dir == parse_args(flags).output_dir
