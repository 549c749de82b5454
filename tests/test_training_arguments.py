"""`hf-vq train` arguments: flags, config files, validation messages, the step budget; the machinery any trainer
builds its own arguments with."""

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import hf_vq.training
from hf_vq.training.arguments import (
    Arguments,
    OptimizationArguments,
    arg,
    check,
    flag_error,
    parse_args,
    resolve_max_train_steps,
)
from hf_vq.training.prior_arguments import PriorArguments, parse_prior_args
from hf_vq.training.tokenizer_arguments import TrainArguments, build_train_parser, parse_train_args


def error_of(capsys, argv, parse=parse_train_args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_defaults_are_the_offline_main_job():
    args = parse_train_args([])
    assert args.dataset_name is None and args.model_type == "vqgan" and args.max_train_steps is None
    assert resolve_max_train_steps(args, None, 1) == 400


def test_command_line_overrides_the_config_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "learning-rate: 1e-3\ntrain_batch_size: 4\nuse_ema: false\n"
        "model_config:\n  block_out_channels: [16, 32]\n  num_vq_embeddings: 64\n"
    )
    args = parse_train_args(["--config", str(config), "--learning-rate", "1e-4"])
    assert args.learning_rate == 1e-4  # the flag wins
    assert args.train_batch_size == 4 and args.use_ema is False
    assert json.loads(args.model_config) == {"block_out_channels": [16, 32], "num_vq_embeddings": 64}
    assert isinstance(parse_train_args(["--config", str(config)]).learning_rate, float)  # YAML's "1e-3" string


def test_json_config_files_work_too(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"max_train_steps": 7, "mixed_precision": "bf16"}))
    args = parse_train_args(["--config", str(config)])
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


def test_hf_vq_training_parse_args_is_the_tokenizers():
    assert hf_vq.training.parse_args is parse_train_args  # `train(parse_args([...]))`, as documented
    assert isinstance(hf_vq.training.parse_args([]), TrainArguments)
    assert "--model-type" in build_train_parser().format_help()


@dataclass
class ToyModelArguments(Arguments):
    _argument_group_name = "toy model"

    width: int = arg(8, "Width of the toy model.")
    kind: str = arg("a", "Kind of toy.", choices=("a", "b"))

    def _validate(self) -> None:
        check(self, ("width",), "an even integer >= 2", lambda v: v >= 2 and v % 2 == 0)
        if self.kind == "b" and self.width < 4:
            raise flag_error("width", "at least 4 for --kind b", self.width)


@dataclass
class ToyArguments(OptimizationArguments, ToyModelArguments):
    """A third trainer's arguments, built from the public helpers only."""


def test_a_new_trainer_builds_its_arguments_from_the_public_helpers(tmp_path, capsys):
    def parse(argv):
        return parse_args(argv, ToyArguments, prog="toy-train", description="Train a toy.")

    (tmp_path / "toy.yaml").write_text("width: 6\nlearning-rate: 0.01\n")
    args = parse(["--config", str(tmp_path / "toy.yaml"), "--kind", "b"])
    assert (args.width, args.kind, args.learning_rate, args.adam_beta1) == (6, "b", 0.01, 0.5)
    assert "--width must be an even integer >= 2; got 3." in error_of(capsys, ["--width", "3"], parse)
    err = error_of(capsys, ["--width", "2", "--kind", "b"], parse)
    assert err.startswith("usage: toy-train") and "--width must be at least 4 for --kind b; got 2." in err
    assert "did you mean --width?" in error_of(capsys, ["--widht", "4"], parse)


def test_the_prior_has_its_own_parser():
    args = parse_prior_args(["--tokens", "some/tokens", "--adam-beta2", "0.99"])
    assert isinstance(args, PriorArguments) and (args.adam_beta1, args.adam_beta2) == (0.9, 0.99)


def test_the_shared_loop_and_the_argument_machinery_know_no_trainer():
    """The loop's modules import neither a trainer nor its registry (`--model-type`): a new trainer adds files."""
    trainers = {"tokenizer", "tokenizer_arguments", "tokenizer_types", "prior", "prior_arguments", "prior_types"}
    folder = Path(hf_vq.training.__file__).parent
    for name in ("arguments", "loop", "task", "step", "checkpointing", "output"):
        imported = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {a.name for a in node.names}
        assert not imported & trainers, f"training/{name}.py imports {sorted(imported & trainers)}"
