"""The README's Python examples run as tests, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hf_vq import VQGANModel

from helpers import tiny_vqgan_config, tiny_vqvae2_config

REPO_ROOT = Path(__file__).resolve().parents[1]


def readme_python_block(heading: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_runs(tmp_path, monkeypatch):
    code = readme_python_block("Quick start")
    # The quick start loads the folder `hf-vq train` leaves behind; a tiny model saved there stands in for it.
    folder = re.search(r'from_pretrained\("([^"]+)"\)', code).group(1)
    monkeypatch.chdir(tmp_path)
    VQGANModel(tiny_vqgan_config()).save_pretrained(tmp_path / folder)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert tuple(namespace["tokens"].shape) == (2, 32, 32)
    assert tuple(namespace["decoded"].shape) == (2, 3, 64, 64)
    assert (tmp_path / "my-vqgan" / "model.safetensors").exists()


def test_training_yaml_example_parses(tmp_path):
    from hf_vq import VQGANConfig
    from hf_vq.training import parse_args

    text = (REPO_ROOT / "README.md").read_text()
    (tmp_path / "run.yaml").write_text(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    args = parse_args(["--config", str(tmp_path / "run.yaml"), "--learning-rate", "2e-4"])
    assert args.learning_rate == 2e-4 and args.max_train_steps == 200000
    from hf_vq.training.arguments import parse_json_or_file

    VQGANConfig(**parse_json_or_file(args.model_config, "model_config"))  # the example's model fields are valid
    from hf_vq.training.tokenizer import TOKENIZER_TYPES, new_model_config

    config = new_model_config(TOKENIZER_TYPES["vqgan"], args)  # as `hf-vq train` builds it: on top of the defaults
    assert list(config.block_out_channels) == [128, 128, 256, 256, 512] and config.downsampling_factor == 16


def test_vqvae2_example_runs(tmp_path, monkeypatch):
    from hf_vq import VQVAE2Model

    code = readme_python_block("VQ-VAE-2: two grids")
    folder = re.search(r'from_pretrained\("([^"]+)"\)', code).group(1)
    monkeypatch.chdir(tmp_path)
    VQVAE2Model(tiny_vqvae2_config()).save_pretrained(tmp_path / folder)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert tuple(namespace["top"].shape) == (1, 8, 8) and tuple(namespace["bottom"].shape) == (1, 16, 16)
    assert tuple(namespace["images"].shape) == (1, 3, 64, 64)


@pytest.mark.slow
def test_generation_commands_run_in_order(tmp_path, monkeypatch):
    """The commands of "Generate images" (the flow benchmarks/generation_quality.py measures), as written, with tiny
    budgets appended (flags given twice: the last one wins), run in a fresh folder."""
    from hf_vq.cli import main as cli
    from hf_vq.data.fashion_mnist import is_available

    if not is_available():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Generate images: a prior over the tokens\n", 1)[1].split("\n## ", 1)[0]
    commands = [line.split()[1:] for line in re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()]
    assert [c[0] for c in commands] == ["train", "tokenize", "tokenize", "train-prior", "generate"]
    assert commands[2][commands[2].index("--split") + 1] == "test"  # the held-out split train-prior scores
    tiny = {
        "train": [
            "--max-train-steps",
            "2",
            "--train-batch-size",
            "4",
            "--num-eval-images",
            "4",
            "--report-to",
            "none",
        ],
        "tokenize": ["--num-images", "32", "--batch-size", "16"],
        "train-prior": [
            "--max-train-steps",
            "2",
            "--hidden-size",
            "32",
            "--num-hidden-layers",
            "1",
            "--num-attention-heads",
            "2",
            "--train-batch-size",
            "8",
            "--report-to",
            "none",
        ],
        "generate": ["--num-images", "2"],
    }
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert cli([*command, *tiny[command[0]]]) == 0, command
    assert (tmp_path / "outputs/fm-prior/model_index.json").is_file()
    assert {p.name.split("-")[0] for p in (tmp_path / "outputs/fm-tokens/data").iterdir()} == {"train", "test"}
    assert (tmp_path / "samples.png").is_file()
