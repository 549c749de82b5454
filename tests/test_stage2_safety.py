"""Stage 2 as safe as stage 1 (issue 27): `hf-vq generate` refuses bad arguments and output paths before it samples,
in `train-prior`'s words. Each test checks the message (the flag or file, the expected value, the fix) and that
nothing was written."""

import pytest
import torch

from hf_vq.cli import main as cli
from hf_vq.modeling import VQPriorConfig, VQPriorForCausalLM

from helpers import TINY_TRANSFORMER, save_tokenizer

pytest.importorskip("diffusers")


def listing(folder) -> dict:
    """Every path under `folder` with its size and mtime: 'nothing on disk changed' compares two of these."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """A tiny VQ-GAN tokenizer + a one-layer two-class prior, saved as a VQImagePipeline folder."""
    from hf_vq.pipelines import VQImagePipeline

    folder = tmp_path_factory.mktemp("pipeline")
    tokenizer = save_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    torch.manual_seed(0)
    config = VQPriorConfig.from_tokenizer(tokenizer, num_classes=2, **{**TINY_TRANSFORMER, "num_hidden_layers": 1})
    VQImagePipeline(vqvae=tokenizer, transformer=VQPriorForCausalLM(config)).save_pretrained(folder)
    return folder


@pytest.fixture
def no_sampling(monkeypatch):
    """Makes sampling fail loudly: a refusal must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("sampled before the arguments were checked")

    monkeypatch.setattr("hf_vq.pipelines.sampling.sample_images", refuse)


def test_generate_refuses_what_train_prior_refuses_in_the_same_words(tmp_path, pipeline_dir, no_sampling, capsys):
    from hf_vq.training.arguments import flag_error

    output = tmp_path / "out" / "grid.png"
    for value in ("-1", "nan"):
        assert cli(["generate", str(pipeline_dir), "--guidance-scale", value, "--output", str(output)]) == 2
        expected = str(flag_error("guidance_scale", "a number >= 0", float(value)))  # train-prior's message
        assert expected in capsys.readouterr().err
    assert cli(["generate", str(pipeline_dir), "--columns", "0", "--output", str(output)]) == 2
    assert "--columns must be an integer >= 1; got 0." in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generate_checks_the_output_path_before_sampling(tmp_path, pipeline_dir, no_sampling, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    before = listing(tmp_path)
    cases = {
        "notes.txt/deeper/grid.png": f"{tmp_path / 'notes.txt'} is a file, not a folder. Choose another --output",
        "folder": f"is a folder; the grid is one image file. Give a file name, e.g. --output {tmp_path / 'folder'}/",
        "grid": "must end in an image extension that Pillow writes (.png, .jpg, .webp, ...); got 'no extension'",
        "grid.txt": f"got '.txt'. Use e.g. --output {tmp_path / 'grid.png'}.",
    }
    for output, message in cases.items():
        assert cli(["generate", str(pipeline_dir), "--output", str(tmp_path / output)]) == 2
        assert message in capsys.readouterr().err, output
    assert listing(tmp_path) == before


def test_generate_writes_the_grid_whole_where_a_folder_is_missing(tmp_path, pipeline_dir):
    output = tmp_path / "new" / "grid.jpg"
    argv = ["generate", str(pipeline_dir), "--num-images", "1", "--device", "cpu", "--output", str(output)]
    assert cli(argv) == 0
    assert sorted(p.name for p in output.parent.iterdir()) == ["grid.jpg"]  # no temporary file left
    assert output.read_bytes()[:2] == b"\xff\xd8"  # written as JPEG, as the extension says
