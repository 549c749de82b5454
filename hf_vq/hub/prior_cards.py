"""The model card of a generation pipeline (`hf-vq train-prior`'s output folder), rendered from
`model_cards/vq_prior.md` like a tokenizer's card is from `model_cards/vq_tokenizer.md` (`cards.py`).

The card knows no prior family: the family's name, Hub tag and architecture words are the prior's `model_card_name`,
`model_card_tag` and `model_card_details()`; its held-out score is named by `held_out_metric` and explained by
`held_out_description`, and its sampling options come from `sampling_options()` (the prior interface,
`hf_vq.modeling.VQPriorMixin`). A new family gets a correct card by describing itself, without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .._version import __version__
from .cards import DEFAULT_LICENSE, model_card_template_path

PRIOR_CARD_TEMPLATE = "vq_prior.md"


def prior_card_template_path() -> Path:
    """The pipeline card template, in the folder of the tokenizer's (`hf_vq/model_cards/` in an installed wheel, else
    `model_cards/` of the source tree)."""
    path = model_card_template_path().with_name(PRIOR_CARD_TEMPLATE)
    if not path.is_file():
        raise FileNotFoundError(
            f"Model card template {PRIOR_CARD_TEMPLATE} not found next to {path.parent}; reinstall."
        )
    return path


def render_pipeline_card(
    prior,
    *,
    title: str,
    model_id: str,
    tokenizer_class: str | None,
    tokenizer: str | None,
    dataset: str,
    training: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
    grid: str | None = None,
    guidance_scale: float = 1.0,
    origin: Mapping[str, str] | None = None,
    license: str = DEFAULT_LICENSE,
) -> ModelCard:
    """The `ModelCard` of a pipeline folder whose `transformer/` is `prior` (any family).

    Args:
        prior (`VQPriorMixin`): the pipeline's prior.
        title (`str`): the card's heading (the folder's or repo's name).
        model_id (`str`): the folder or Hub id in the usage snippets.
        tokenizer_class (`str`, *optional*) and tokenizer (`str`, *optional*): the class and source of the
            tokenizer in `vqvae/`, as the token set records them.
        dataset (`str`): what the token set was made from.
        training (`Mapping`): the training recipe, one table row per entry; `steps` is also named under the grid.
        results (`Mapping`, *optional*): the prior's held-out score (`nats_per_token`, `bits_per_token`).
        grid (`str`, *optional*): file name of the sample grid in the folder (one row per class).
        guidance_scale (`float`, *optional*, defaults to 1.0): the guidance the grid was sampled with.
        origin (`Mapping`, *optional*): for a converted pipeline (`hf-vq convert llamagen`), where the weights come
            from: `source`, `license`, `published_fid`, `parity` (which conversion parity was verified) and
            `sampling` (the original code's sampling defaults).
        license (`str`, *optional*): the card's license; a converted model keeps its origin's.
    """
    config = prior.config
    classes = f"{config.num_classes} classes" if config.num_classes else "unconditional"
    if config.has_class_names:
        classes += f" ({', '.join(str(config.id2label[i]) for i in range(config.num_classes))})"
    tags = ["hf-vq", "vq-prior", "image-generation", "class-conditional" if config.num_classes else "unconditional"]
    data = ModelCardData(
        library_name="hf-vq",
        pipeline_tag="unconditional-image-generation",
        tags=list(dict.fromkeys([*tags, *([prior.model_card_tag] if prior.model_card_tag else [])])),
        license=license,
    )
    options = ", ".join(f"`{name}={value!r}`" for name, value in prior.sampling_options().items())
    score = None
    if results is not None:
        is_nll = prior.held_out_metric == "nll"
        score = {
            "title": "Held-out NLL" if is_nll else f"Held-out `{prior.held_out_metric}`",
            "metric": prior.held_out_metric,
            "is_nll": is_nll,
            "nats": f"{results['nats_per_token']:.4f}",
            "bits": f"{results['bits_per_token']:.4f}",
            "description": prior.held_out_description,
        }
    return ModelCard.from_template(
        data,
        template_path=str(prior_card_template_path()),
        hf_vq_version=__version__,
        title=title,
        parameters=f"{sum(p.numel() for p in prior.parameters()) / 1e6:.1f}M",
        family=prior.model_card_name,
        model_class=type(prior).__name__,
        details=prior.model_card_details(),
        sequence_length=config.sequence_length,
        image_size=f"{config.image_size[0]}x{config.image_size[1]}",
        tokenizer_class=tokenizer_class,
        tokenizer=tokenizer,
        classes=classes,
        dataset=dataset,
        grid=grid,
        guidance_scale=f"{guidance_scale:g}",
        steps=training.get("steps"),
        model_id=model_id,
        first_labels="class_labels=[0]" if config.num_classes else "class_labels=None",
        sampling_options=options,
        score=score,
        training=list(training.items()),
        origin=origin,
    )


def write_pipeline_card(output_dir: str | Path, prior, **card: Any) -> Path:
    """Writes `README.md` into the pipeline folder `output_dir`: [`render_pipeline_card`] with `card`'s keywords
    (`title` and `model_id` default to the folder's name and path)."""
    output_dir = Path(output_dir)
    card.setdefault("title", output_dir.resolve().name)
    card.setdefault("model_id", str(output_dir))
    path = output_dir / "README.md"
    render_pipeline_card(prior, **card).save(path)
    return path


__all__ = ["PRIOR_CARD_TEMPLATE", "prior_card_template_path", "render_pipeline_card", "write_pipeline_card"]
