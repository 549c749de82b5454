"""`hf-vq demo`: a Gradio app for a tokenizer (Reconstruct, Token map, Code usage, Token edit) and for a pipeline
(the same for its tokenizer, and Generate), launched locally or exported as a Hugging Face Space. Needs the `demo`
extra (`pip install "hf-vq[demo]"`).

One room per concern:

- `tokenizer.py`, `generator.py`, `drawing.py`: what the tabs compute and draw, without Gradio (tested as plain
  calls);
- `tokenizer_tabs.py`, `generator_tabs.py`, `ui.py`: the Gradio tabs over them;
- `loading.py`: the tokenizer, pipeline and card results a source holds ([`load_models`]);
- `app.py`: putting the tabs together for them ([`build_demo`]);
- `export.py`: a Space folder (`app.py`, `requirements.txt` pinned to this hf-vq) ([`export_space`]).

Names load on first use, so importing a computation module does not import Gradio.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_demo": "app",
    "launch": "app",
    "load_models": "loading",
    "export_space": "export",
    "TokenizerDemo": "tokenizer",
    "GeneratorDemo": "generator",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
