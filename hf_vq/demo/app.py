"""The demo app: a tokenizer or a pipeline loaded once, its tabs put together in one `gr.Blocks`, and launched.

A tokenizer folder (or Hub id) gets the tokenizer tabs; a pipeline (or a prior alone, with the tokenizer its config
records) gets the tokenizer tabs of its tokenizer and the generator tabs of its prior.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from .generator import GeneratorDemo
from .generator_tabs import edit_tab, generate_tab
from .loading import load_lpips_or_none, load_models
from .tokenizer import TokenizerDemo, builtin_examples
from .tokenizer_tabs import tokenizer_tabs


def build_demo(
    name: str,
    *,
    device=None,
    trust_remote_code: bool = False,
    examples: list[str] | None = None,
    title: str | None = None,
) -> gr.Blocks:
    """The demo of the tokenizer or pipeline in the folder or Hub repo `name`, as a `gr.Blocks` (not launched).

    Args:
        name (`str`): a tokenizer folder or Hub id, a pipeline folder or Hub id (`hf-vq train-prior`'s output), or
            a prior's.
        device (`str`, *optional*): where the models run (default: CUDA if available).
        trust_remote_code (`bool`, *optional*, defaults to `False`): allow models that ship their own code.
        examples (`list[str]`, *optional*): image files offered as examples; default: the built-in photos.
        title (`str`, *optional*): the page's title; default: `hf-vq: ` and the folder's or repo's name.

    Example:

    ```python
    from hf_vq.demo import build_demo

    build_demo("path/to/tokenizer").launch()
    ```
    """
    models = load_models(name, device, trust_remote_code)
    tokenizer_demo = TokenizerDemo(models.tokenizer, load_lpips_or_none(), models.card_results)
    kind = "pipeline" if models.pipeline is not None else "tokenizer"
    title = title or f"hf-vq: {Path(name).name or name}"
    with gr.Blocks(title=title) as blocks:
        gr.Markdown(
            f"# {title}\nA {type(models.tokenizer).__name__} {kind}: upload an image to see what its tokens keep and "
            "lose" + (", or generate images with its prior." if models.pipeline is not None else ".")
        )
        with gr.Tabs():
            with gr.Tab("Tokenizer"):
                tokenizer_tabs(tokenizer_demo, builtin_examples() if examples is None else examples)
            if models.pipeline is not None:
                generator_demo = GeneratorDemo(models.pipeline)
                generate_tab(generator_demo)
                if generator_demo.can_edit:
                    edit_tab(generator_demo)
    return blocks


def launch(blocks: gr.Blocks, port: int | None = None, share: bool = False) -> tuple[str, str | None]:
    """Starts serving `blocks` without blocking (on `port`, or Gradio's default / `GRADIO_SERVER_PORT`); returns the
    local URL and the public one (`share`). `blocks.block_thread()` then waits until Ctrl-C."""
    _, local_url, share_url = blocks.launch(
        server_port=port, share=share, prevent_thread_lock=True, quiet=True, show_error=False
    )
    return local_url, share_url


__all__ = ["build_demo", "launch"]
