"""The demo app: a tokenizer or a pipeline loaded once, its tabs put together in one `gr.Blocks`, and launched.

A tokenizer folder (or Hub id) gets the tokenizer tabs; a pipeline (or a prior alone, with the tokenizer its config
records) gets the tokenizer tabs of its tokenizer and the generator tabs of its prior.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ..loading import default_device, load_model, load_pipeline
from .generator import GeneratorDemo
from .generator_tabs import edit_tab, generate_tab
from .tokenizer import TokenizerDemo, builtin_examples
from .tokenizer_tabs import tokenizer_tabs

logger = logging.getLogger(__name__)

CARD_INFO_FILENAME = "card_info.json"  # what hf_vq.hub.cards writes beside every saved model's README.md


@dataclass
class DemoModels:
    """What a demo shows: a tokenizer, and the pipeline it belongs to when there is one.

    Args:
        name (`str`): the folder or Hub id they were loaded from.
        tokenizer (`VQPreTrainedModel`): in eval mode.
        pipeline (`VQImagePipeline`, *optional*): for a pipeline or a prior.
        card_results (`list[dict]`): the evaluations the tokenizer's model card records.
    """

    name: str
    tokenizer: Any
    pipeline: Any = None
    card_results: list[dict] = field(default_factory=list)


def _is_pipeline(name: str) -> bool:
    """Whether `name` is a pipeline (a folder or Hub repo with `model_index.json`)."""
    folder = Path(name).expanduser()
    if folder.exists():
        return (folder / "model_index.json").is_file()
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(name, "model_index.json")
    except Exception:  # not a pipeline repo (or not reachable): `load_model` says which, in its own words
        return False
    return True


def _card_results(name: str, subfolder: str = "") -> list[dict]:
    """The evaluation results recorded with a saved tokenizer (`card_info.json`'s `results`), or `[]`."""
    path = Path(name).expanduser() / subfolder / CARD_INFO_FILENAME
    if not path.exists() and not Path(name).expanduser().exists():
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(name, CARD_INFO_FILENAME, subfolder=subfolder or None))
        except Exception:  # a model without a card's record: the Code usage tab says none is recorded
            return []
    if not path.is_file():
        return []
    results = json.loads(path.read_text(encoding="utf-8")).get("results") or []
    return [results] if isinstance(results, dict) else list(results)


def load_models(name: str, device=None, trust_remote_code: bool = False) -> DemoModels:
    """The tokenizer (and pipeline) in the folder or Hub repo `name`, on `device` (default: CUDA if available)."""
    from ..modeling import VQPreTrainedModel, VQPriorMixin

    device = default_device(device)
    if _is_pipeline(name):
        pipe = load_pipeline(name, device=device)
        return DemoModels(name, pipe.vqvae.eval(), pipe, _card_results(name, "vqvae"))
    model = load_model(
        name, (VQPreTrainedModel, VQPriorMixin), device=device, trust_remote_code=trust_remote_code
    ).eval()
    if isinstance(model, VQPriorMixin):  # a prior alone: its config records its tokenizer
        pipe = load_pipeline(name, device=device)
        source = pipe.transformer.config.tokenizer_name_or_path or ""
        return DemoModels(name, pipe.vqvae.eval(), pipe, _card_results(source) if source else [])
    return DemoModels(name, model.requires_grad_(False), None, _card_results(name))


def load_lpips_or_none():
    """The AlexNet LPIPS network on its cached weights, or `None` (logged) where they cannot be had."""
    from ..losses.lpips import load_lpips

    try:
        return load_lpips("alexnet")
    except (OSError, ValueError, ImportError) as error:
        logger.warning("LPIPS will not be shown: its weights could not be loaded (%s).", error)
        return None


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
            f"# {title}\n{type(models.tokenizer).__name__} {kind} from `{name}`: upload an image to see what its "
            "tokens keep and lose" + (", or generate images with its prior." if models.pipeline is not None else ".")
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


__all__ = ["DemoModels", "build_demo", "launch", "load_models"]
