"""`make train` / `make test` install torch only when it is missing or older than the project's floor, so a
user's own torch (a CUDA build on a GPU machine) is never replaced; CI pins its build in `.ci/run`."""

import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_install(repo_root, *variables: str) -> str:
    """`make install` with pip replaced by `echo`: what would be installed, nothing is."""
    result = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(repo_root),
            "install",
            "PIP=echo pip-install",
            f"PYTHON={sys.executable}",
            *variables,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_an_installed_recent_torch_is_kept(repo_root):
    from importlib.metadata import version

    output = dry_install(repo_root)
    assert f"Keeping the installed torch {version('torch')} (needs >= 2.4)" in output
    assert not re.search(r"pip-install torch", output)
    assert "pip-install -e .[dev]" in output  # the rest is still installed


def test_torch_is_installed_when_older_than_the_floor_or_missing(repo_root, tmp_path):
    assert "pip-install torch==2.13.0" in dry_install(repo_root, "TORCH_FLOOR=99.0")
    # A fresh machine: a "python" in which `import`ing torch's metadata fails.
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\nexec {sys.executable} -S -c 'import sys; sys.exit(1)' \"$@\"\n")
    fake_python.chmod(0o755)
    output = subprocess.run(
        ["make", "-s", "-C", str(repo_root), "install", "PIP=echo pip-install", f"PYTHON={fake_python}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "torch is missing or older than 2.4: installing torch==2.13.0" in output
    assert "pip-install torch==2.13.0" in output


def test_ci_still_pins_its_torch(repo_root):
    script = (repo_root / ".ci" / "run").read_text()
    assert "torch==2.13.0" in script and script.index("torch==2.13.0") < script.index("make test")
