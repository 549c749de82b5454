"""The `hf-vq` entry point itself: `--help` imports no heavy library, every command is a module of `hf_vq.commands`,
and `import hf_vq` is lazy while saving a model still writes its card."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

import hf_vq
from hf_vq.cli import COMMANDS, main

from helpers import TINY_VQGAN


def run_python(script: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-c", textwrap.dedent(script)]
    return subprocess.run(argv, check=False, capture_output=True, text=True, env=env, cwd=cwd)


def test_help_imports_neither_torch_nor_transformers(tmp_path):
    """`hf-vq --help` took 7-9 s importing transformers' PreTrainedModel (#23). What it imports is checked, not how
    long it takes: deterministic on a busy machine (measured: about 0.1 s, best of 5, on 2 idle cores). Gradio (the
    demo extra, 6 s to import) is left to `hf-vq demo`."""
    out = run_python(
        """
        import sys
        from hf_vq.cli import main
        assert main(["--help"]) == 0
        heavy = ("torch", "transformers", "datasets", "diffusers", "gradio")
        heavy = sorted(name for name in heavy if name in sys.modules)
        print("heavy:", heavy)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train-prior" in out.stdout and "heavy: []" in out.stdout


def test_every_command_is_a_module_with_a_main():
    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(f"hf_vq.commands.{module}").main), name


def test_an_unknown_command_is_named_with_a_suggestion(capsys):
    assert main(["evalute"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'evalute'" in err and "Did you mean evaluate?" in err


@pytest.mark.parametrize(
    "missing, extras",
    [("diffusers", "diffusers"), ("skimage", "training"), ("yaml", "diffusers,training"), ("gradio", "demo")],
)
def test_a_missing_optional_dependency_names_the_extra_that_provides_it(monkeypatch, capsys, missing, extras):
    """Read from hf-vq's installed metadata (its `Requires-Dist` lines and their `extra == ...` markers), so the
    hint follows pyproject.toml; import names that differ from the distribution's (skimage) are mapped."""
    from hf_vq.commands import generate

    def import_fails(argv):
        raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)

    monkeypatch.setattr(generate, "main", import_fails)
    assert main(["generate", "folder"]) == 1
    err = capsys.readouterr().err
    assert f"hf-vq generate needs {missing}, an optional dependency that is not installed" in err
    assert f"`pip install 'hf-vq[{extras}]'`" in err and f"`pip install -e '.[{extras}]'`" in err


def test_a_missing_module_that_no_extra_provides_is_not_hidden(monkeypatch):
    from hf_vq.commands import generate

    def import_fails(argv):
        raise ModuleNotFoundError("No module named 'mytypo'", name="mytypo")

    monkeypatch.setattr(generate, "main", import_fails)
    with pytest.raises(ModuleNotFoundError, match="mytypo"):
        main(["generate", "folder"])


def test_the_public_names_load_on_first_use():
    assert set(hf_vq.__all__) <= set(dir(hf_vq))
    assert hf_vq.VQGANModel is importlib.import_module("hf_vq.modeling").VQGANModel
    assert hf_vq.VQGANLoss is importlib.import_module("hf_vq.losses").VQGANLoss
    with pytest.raises(AttributeError, match="has no attribute 'VQGANModle'"):
        hf_vq.VQGANModle  # noqa: B018


@pytest.mark.slow  # a subprocess importing torch and transformers: ~10 s on 2 busy cores
def test_a_model_saved_without_import_hf_vq_gets_its_card(tmp_path):
    """`import hf_vq` no longer imports `hf_vq.hub` (the card writer): the model imports it on its first save."""
    out = run_python(
        f"""
        import sys
        from hf_vq.modeling import VQGANConfig, VQGANModel
        assert "hf_vq.hub" not in sys.modules
        VQGANModel(VQGANConfig(**{TINY_VQGAN!r})).save_pretrained("saved")
        print("card:", "VQGANModel" in open("saved/README.md").read())
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "card: True" in out.stdout
