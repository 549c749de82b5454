"""`hf-vq train` arguments: flags, config files, validation messages, the step budget."""

import json

import pytest

from hf_vq.training.arguments import TrainArguments, parse_args, resolve_max_train_steps


def error_of(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_defaults_are_the_offline_main_job():
    args = parse_args([])
    assert args.dataset_name is None and args.model_type == "vqgan" and args.max_train_steps is None
    assert resolve_max_train_steps(args, None, 1) == 400


def test_command_line_overrides_the_config_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "learning-rate: 1e-3\ntrain_batch_size: 4\nuse_ema: false\n"
        "model_config:\n  block_out_channels: [16, 32]\n  num_vq_embeddings: 64\n"
    )
    args = parse_args(["--config", str(config), "--learning-rate", "1e-4"])
    assert args.learning_rate == 1e-4  # the flag wins
    assert args.train_batch_size == 4 and args.use_ema is False
    assert json.loads(args.model_config) == {"block_out_channels": [16, 32], "num_vq_embeddings": 64}
    assert isinstance(parse_args(["--config", str(config)]).learning_rate, float)  # YAML's "1e-3" string


def test_json_config_files_work_too(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"max_train_steps": 7, "mixed_precision": "bf16"}))
    args = parse_args(["--config", str(config)])
    assert args.max_train_steps == 7 and args.mixed_precision == "bf16"


@pytest.mark.parametrize(
    ("file_text", "flags", "message"),
    [
        ("lerning_rate: 0.1\n", [], "unknown key `lerning_rate`. Did you mean `learning_rate`?"),
        ("train_batch_size: [1, 2]\n", [], "--train-batch-size must be of type int"),
        ("learning_rate: fast\n", [], "--learning-rate: invalid float value: 'fast'"),
        ("mixed_precision: fp8\n", [], "--mixed-precision must be one of ['no', 'fp16', 'bf16']"),
        ("", ["--train-batch-size", "0"], "--train-batch-size must be an integer >= 1; got 0"),
        ("", ["--learning-rat", "1"], "unknown argument '--learning-rat'; did you mean --learning-rate?"),
        ("", ["--lr-scheduler", "step"], "invalid choice: 'step'"),
        ("", ["--ema-decay", "1.5"], "--ema-decay must be a number in [0, 1)"),
        ("", ["--resolution", "30"], "--resolution must be a multiple of 8"),
        ("", ["--max-empty-batches", "0"], "--max-empty-batches must be an integer >= 1; got 0"),
    ],
)
def test_invalid_input_fails_naming_the_flag(tmp_path, capsys, file_text, flags, message):
    argv = list(flags)
    if file_text:
        (tmp_path / "run.yaml").write_text(file_text)
        argv = ["--config", str(tmp_path / "run.yaml"), *argv]
    assert message in error_of(capsys, argv)


def test_step_budget_from_epochs_needs_a_known_size():
    args = TrainArguments(num_train_epochs=2.0, train_batch_size=4, gradient_accumulation_steps=2)
    assert resolve_max_train_steps(args, 100, num_processes=2) == 13  # ceil(2 * 100 / 16)
    with pytest.raises(ValueError, match="--max-train-steps"):
        resolve_max_train_steps(args, None, 1)
    assert resolve_max_train_steps(TrainArguments(max_train_steps=5, num_train_epochs=9.0), 100, 1) == 5
