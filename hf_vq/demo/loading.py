"""What a demo shows, loaded without Gradio: the tokenizer in a folder or Hub repo, the pipeline it belongs to when
the source is a pipeline (or a prior, with the tokenizer its config records), and the evaluations its model card
records."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..loading import default_device, load_model, load_pipeline

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


__all__ = ["DemoModels", "load_lpips_or_none", "load_models"]
