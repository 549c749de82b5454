"""`hf-vq demo MODEL --export DIR`: the demo as a Hugging Face Space folder, ready to push (`hf upload --repo-type
space ORG/NAME DIR`) or to run with `python DIR/app.py`.

The folder holds:

- `app.py`: builds the demo with [`build_demo`] and launches it (a Space runs it as is);
- `requirements.txt`: `hf-vq[demo]` pinned to this version of hf-vq (the `demo` extra pins Gradio);
- `README.md`: the Space's card, whose front matter names the Gradio SDK and its version;
- `model/`: a copy of the model or pipeline folder, when MODEL is a local folder (a Hub id is loaded from the Hub);
- `examples/`: the held-out built-in photos, when installed, offered as examples.

The folder is written beside DIR under a temporary name and renamed into place, so a failed export leaves nothing.
No Gradio is needed to export.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from .._version import __version__
from .tokenizer import builtin_examples

APP_TEMPLATE = '''"""{title}: the hf-vq demo of {source}, as a Hugging Face Space (Gradio SDK).

Written by `hf-vq demo {source} --export`. Run it with `python app.py` (GRADIO_SERVER_PORT sets the port); on a
Space it starts by itself.
"""

from pathlib import Path

from hf_vq.demo import build_demo

HERE = Path(__file__).resolve().parent
MODEL = {model}
EXAMPLES = sorted(str(path) for path in (HERE / "examples").glob("*") if path.is_file())

demo = build_demo(MODEL, examples=EXAMPLES, title={title!r})

if __name__ == "__main__":
    demo.launch()
'''

README_TEMPLATE = """---
title: {title}
sdk: gradio
{sdk_version}app_file: app.py
pinned: false
tags:
  - hf-vq
  - image-tokenizer
---

# {title}

The hf-vq demo of `{source}`: upload an image to see its reconstruction, token map, code usage
and token edits{generate}. Written by `hf-vq demo {source} --export` (hf-vq {version}).
"""


def gradio_requirement() -> str | None:
    """The Gradio version the `demo` extra pins (from this installation's metadata), or `None` if not found."""
    try:
        requirements = metadata.requires("hf-vq") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        found = re.match(r"gradio\s*==\s*([\w.]+)\s*;.*extra\s*==\s*['\"]demo['\"]", requirement)
        if found:
            return found.group(1)
    return None


def _check_model_folder(folder: Path) -> None:
    if not ((folder / "config.json").is_file() or (folder / "model_index.json").is_file()):
        raise FileNotFoundError(
            f"{folder} is not a model or pipeline folder (no config.json or model_index.json in it). Give a folder "
            "written by save_pretrained or an hf-vq command, or a Hub model id."
        )


def export_space(source: str, output_dir: str | os.PathLike, examples: list[str] | None = None) -> list[str]:
    """Writes the Space folder of the demo of `source` into `output_dir` (see the module docstring).

    Args:
        source (`str`): a tokenizer or pipeline folder (copied into the Space as `model/`) or a Hub id (loaded from
            the Hub when the Space starts).
        output_dir (`str` or `os.PathLike`): the folder to write; it must not exist, or be empty.
        examples (`list[str]`, *optional*): image files copied into `examples/`; default: the built-in photos.

    Returns:
        The files written, relative to `output_dir`, sorted.
    """
    output = Path(output_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"--export {str(output)!r} already exists and is not empty. Give a new folder.")
    local = Path(source).expanduser()
    if local.exists():
        _check_model_folder(local)
    examples = builtin_examples() if examples is None else examples
    title = f"hf-vq demo: {local.name if local.exists() else source}"
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        if local.exists():
            shutil.copytree(local, staging / "model", ignore=shutil.ignore_patterns("checkpoint-*", "logs", "runs"))
            model = 'str(HERE / "model")'
        else:
            model = repr(source)
        (staging / "app.py").write_text(APP_TEMPLATE.format(title=title, source=source, model=model))
        (staging / "requirements.txt").write_text(f"hf-vq[demo]=={__version__}\n")
        gradio = gradio_requirement()
        generate = ", or generate images with its prior" if (staging / "model" / "model_index.json").is_file() else ""
        (staging / "README.md").write_text(
            README_TEMPLATE.format(
                title=title,
                source=source,
                sdk_version=f"sdk_version: {gradio}\n" if gradio else "",
                generate=generate,
                version=__version__,
            )
        )
        if examples:
            (staging / "examples").mkdir()
            for path in map(Path, examples):
                shutil.copyfile(path, staging / "examples" / path.name)
        if output.exists():
            output.rmdir()  # empty (checked above): the staged folder takes its place
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(path.relative_to(output).as_posix() for path in output.rglob("*") if path.is_file())


__all__ = ["export_space", "gradio_requirement"]
