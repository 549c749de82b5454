"""Model cards for hf-vq tokenizers, rendered from what each model says about itself.

Every saved model folder gets a `README.md` rendered from `model_cards/vq_tokenizer.md` with `huggingface_hub`'s
`ModelCard.from_template`, plus `card_info.json`, the inputs it was rendered from, so that `hf-vq evaluate` and
`hf-vq push` can re-render it later (adding measured results, pointing the snippets at the Hub repo) without
losing the training recipe.

The card knows no model type: the name, Hub tag and one-line description are the model's `model_card_name`,
`model_card_tag` and `model_card_description`; the architecture table is `model.architecture_rows()`; token shapes,
codebook sizes and bits per token come from `model.token_layout`, level by level. A new tokenizer (several token
grids included) gets a correct card by describing itself, without a change here.

`card_info` keys (a plain dict, JSON-serialisable; set `model.card_info` before `save_pretrained`, or pass the same
names to [`write_model_card`]; every key is optional):

- `"training"` (`dict`): the training recipe, rendered as a table in insertion order, e.g.
  `{"dataset": "builtin", "steps": 20000, "batch_size": 16, "learning_rate": 1e-4, "image_size": 256,
  "losses": "L1 + LPIPS(vgg16) + hinge GAN from step 5000", "precision": "bf16", "hardware": "1x A100"}`.
- `"results"` (`dict`, or a `list` of them): what [`hf_vq.evaluation.evaluate`] returns; each is rendered as an
  evaluation table with its "Reproduce with" command, and in the card's `model-index`. Keys used: `metrics`
  (`psnr`, `ssim`, `lpips`, `rfid`, `kid`, `kid_std`, `codebook_usage`, `perplexity`; any may be missing),
  `dataset`, `split`, `num_images`, `image_size`, `protocol` (`description`, `lpips_net`, `kid_subset_size`),
  `command`. [`update_model_card`] adds results to those recorded (see [`merge_results`]).
- `"datasets"` (`list[str]`): training datasets. Hub ids (`org/name`) also go to the card metadata.
- `"base_model"` (`str`): the Hub id this model was fine-tuned from (card metadata `base_model`).
- `"grid"` (`str`): file name, inside the model folder, of a sample grid image shown on the card.
- `"grid_caption"` (`str`): one line saying what the grid shows.
- `"license"` (`str`): license id for the metadata; defaults to `"apache-2.0"`.
- `"tags"` (`list[str]`): extra Hub tags.
- `"model_id"` (`str`): the id used in the usage snippets: the Hub repo once pushed, else the save folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .._version import __version__

logger = logging.getLogger(__name__)

CARD_TEMPLATE = "vq_tokenizer.md"
CARD_INFO_FILENAME = "card_info.json"
EVAL_RESULTS_FILENAME = "eval_results.json"
CARD_INFO_KEYS = (
    "training",
    "results",
    "datasets",
    "base_model",
    "grid",
    "grid_caption",
    "license",
    "tags",
    "model_id",
)
DEFAULT_LICENSE = "apache-2.0"


# ------------------------------------------------------------------------------------------------ card files


def model_card_template_path() -> Path:
    """The card template: `hf_vq/model_cards/` in an installed wheel, else `model_cards/` of the source tree."""
    package_dir = Path(__file__).resolve().parent.parent  # hf_vq/hub/cards.py -> hf_vq
    for candidate in (package_dir / "model_cards" / CARD_TEMPLATE, package_dir.parent / "model_cards" / CARD_TEMPLATE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Model card template {CARD_TEMPLATE} not found next to {package_dir}; reinstall hf-vq.")


def load_card_info(folder: str | os.PathLike) -> dict[str, Any]:
    """The `card_info.json` of a saved model folder (`{}` if it has none)."""
    path = Path(folder) / CARD_INFO_FILENAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_model_card(
    model,
    save_directory: str | os.PathLike,
    *,
    results: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    base_model: str | None = None,
    datasets: Iterable[str] | None = None,
    grid_path: str | os.PathLike | None = None,
    grid_caption: str | None = None,
    model_id: str | None = None,
    license: str | None = None,
    tags: Iterable[str] | None = None,
) -> Path:
    """Renders `README.md` (and `card_info.json`) for `model` into `save_directory`.

    Works with the model alone (architecture from its config, parameter counts from its modules); what else the
    card says comes from `model.card_info` (see this module's docstring), overridden by the keyword arguments.
    `VQPreTrainedModel.save_pretrained` calls it, so every saved model has a card.

    Args:
        model (`VQPreTrainedModel`): the model the folder holds.
        save_directory (`str` or `os.PathLike`): the model folder (created if missing).
        results (`dict`, *optional*): output of `hf_vq.evaluation.evaluate`.
        training (`dict`, *optional*): the training recipe.
        base_model (`str`, *optional*): Hub id of the model this one was fine-tuned from.
        datasets (`list[str]`, *optional*): training datasets.
        grid_path (`str` or `os.PathLike`, *optional*): a sample grid image; copied into the folder if outside it.
        grid_caption (`str`, *optional*): what the grid shows.
        model_id (`str`, *optional*): id for the usage snippets. Defaults to the Hub id or the folder path.
        license (`str`, *optional*): license id, defaults to `"apache-2.0"`.
        tags (`list[str]`, *optional*): extra tags.

    Returns:
        `Path`: the written `README.md`.
    """
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    info = dict(model.card_info or {})
    unknown = sorted(set(info) - set(CARD_INFO_KEYS))
    if unknown:
        raise ValueError(f"Unknown `card_info` keys {unknown}; expected some of {list(CARD_INFO_KEYS)}.")
    explicit = {
        "results": results,
        "training": training,
        "base_model": base_model,
        "datasets": None if datasets is None else list(datasets),
        "grid_caption": grid_caption,
        "model_id": model_id,
        "license": license,
        "tags": None if tags is None else list(tags),
    }
    info.update({key: value for key, value in explicit.items() if value is not None})
    if grid_path is not None:
        info["grid"] = _place_in_folder(Path(grid_path), save_directory)
    if info.get("grid") and not (save_directory / info["grid"]).is_file():
        # A model loaded with `from_pretrained` carries the card of its folder: bring that folder's grid along.
        source = Path(getattr(model, "_card_source_dir", None) or save_directory) / info["grid"]
        if source.is_file():
            (save_directory / info["grid"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, save_directory / info["grid"])
        else:
            logger.warning("The sample grid %s is not in %s; the card will not show it.", info["grid"], save_directory)
            info.pop("grid")
    info.setdefault("model_id", str(save_directory))

    card = render_model_card(model, info, remote_code=_has_remote_code(save_directory))
    readme = save_directory / "README.md"
    card.save(readme)
    (save_directory / CARD_INFO_FILENAME).write_text(json.dumps(info, indent=2, default=_jsonable) + "\n")
    return readme


def update_model_card(folder: str | os.PathLike, *, model=None, **updates: Any) -> Path:
    """Re-renders the card of a saved folder: its `card_info.json`, updated with `updates` (keys of
    [`write_model_card`]). The model is loaded from the folder unless given."""
    folder = Path(folder)
    grid_path = updates.pop("grid_path", None)
    unknown = sorted(set(updates) - set(CARD_INFO_KEYS))
    if unknown:
        raise ValueError(f"Unknown card fields {unknown}; expected some of {list(CARD_INFO_KEYS)} or `grid_path`.")
    if model is None:
        model = _load_folder_model(folder)
    recorded = load_card_info(folder)
    info = {**recorded, **{key: value for key, value in updates.items() if value is not None}}
    if updates.get("results") is not None:  # added to what earlier evaluations recorded, not replacing them
        new = updates["results"]
        new = [public_results(r) for r in new] if isinstance(new, list) else public_results(new)
        info["results"] = merge_results(recorded.get("results"), new)
    previous, model.card_info = model.card_info, info
    try:
        return write_model_card(model, folder, grid_path=grid_path)
    finally:
        model.card_info = previous


def public_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """`results` as a card and a pushed folder may show them, without the paths of the machine they were measured
    on: a local dataset (`/home/me/photos`) becomes `path/to/photos` wherever it appears (the "Reproduce with"
    command, the protocol's description) and `photos (local)` as the `dataset`; any other value that is a local
    absolute path (the model folder, a local FID network file) becomes its file or folder name. Hub ids, built-in
    names and everything else are kept."""
    dataset = str(results.get("dataset") or "")
    text = json.dumps(dict(results))
    name = None
    if _is_local_path(dataset):
        name = Path(dataset).expanduser().resolve().name or "data"
        text = text.replace(json.dumps(dataset)[1:-1], f"path/to/{name}")

    def strip(value):
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items()}
        if isinstance(value, list):
            return [strip(item) for item in value]
        if isinstance(value, str) and value.startswith("/") and Path(value).exists():
            return Path(value).name
        return value

    public = strip(json.loads(text))
    return {**public, "dataset": f"{name} (local)"} if name else public


def _is_local_path(text: str) -> bool:
    path = Path(text).expanduser()
    return bool(text) and (path.is_absolute() or text.startswith((".", "~")) or path.exists())


def merge_results(recorded: Any, new: Mapping[str, Any] | list) -> dict | list:
    """`new` evaluation results added to the `recorded` ones (a dict, a list of them, or `None`).

    A result measured on the same data under the same settings (dataset, split, image size, number of images)
    replaces the recorded one, in place; any other is appended, so the card keeps every evaluation and its
    "Reproduce with" command. One result stays a dict, several become a list.
    """
    merged = _results_list(recorded)
    for result in _results_list(new):
        key = _results_key(result)
        same = [i for i, old in enumerate(merged) if _results_key(old) == key]
        if same:
            merged[same[0]] = dict(result)
        else:
            merged.append(dict(result))
    return merged[0] if len(merged) == 1 else merged


def _results_list(results: Any) -> list[dict]:
    if not results:
        return []
    return [dict(r) for r in results if r] if isinstance(results, list) else [dict(results)]


def _results_key(result: Mapping[str, Any]) -> tuple:
    return tuple(result.get(k) for k in ("dataset", "split", "image_size", "num_images"))


def _load_folder_model(folder: str | os.PathLike):
    """The hf-vq model saved in `folder`, whatever its type (`hf_vq.loading.load_model`)."""
    from ..loading import load_model

    return load_model(str(folder), flag="model folder")


# ------------------------------------------------------------------------------------------------ rendering


def render_model_card(model, info: Mapping[str, Any], *, remote_code: bool = False) -> ModelCard:
    """The `ModelCard` of `model` with the `card_info` dict `info` (see the module docstring)."""
    config = model.config
    layout = model.token_layout
    tag = model.model_card_tag
    evaluations = _results_list(info.get("results"))
    datasets = list(info.get("datasets") or [])
    model_id = str(info.get("model_id") or "")
    name = model_id.rstrip("/").split("/")[-1] or type(model).__name__
    tags = ["hf-vq", "image-tokenizer", "vector-quantization", *([tag] if tag else []), *(info.get("tags") or [])]
    card_data = ModelCardData(
        library_name="hf-vq",
        license=info.get("license") or DEFAULT_LICENSE,
        tags=list(dict.fromkeys(tags)),
        datasets=_hub_ids(datasets) or None,
        base_model=info.get("base_model"),
        model_name=model_id or None,
        eval_results=[entry for results in evaluations for entry in _eval_results(results)] or None,
    )
    low, high = (float(v) for v in config.pixel_range)
    return ModelCard.from_template(
        card_data,
        template_path=str(model_card_template_path()),
        hf_vq_version=__version__,
        title=name,
        summary=_summary(model.model_card_name, layout, config.sample_size),
        model_class=type(model).__name__,
        model_id=model_id,
        remote_code=remote_code,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        sample_size=config.sample_size,
        token_ids=_token_ids_text(layout, config.sample_size),
        image_multiple=layout.image_multiple,
        pixel_range_text=f"[{low:g}, {high:g}]",
        example_input=_example_input(config, low, high),
        architecture=model.architecture_rows(),
        training=[(f"`{key}`", _format_value(value)) for key, value in (info.get("training") or {}).items()],
        evaluations=[
            {
                "title": _evaluation_title(results) if len(evaluations) > 1 else "",
                "metrics": _metric_rows(results),
                "protocol": (results.get("protocol") or {}).get("description", ""),
                "command": results.get("command", "").replace(" MODEL ", f" {shlex.quote(model_id)} ", 1),
            }
            for results in evaluations
            if _metric_rows(results)
        ],
        grid=info.get("grid"),
        grid_caption=info.get("grid_caption") or "Sample inputs and their reconstructions:",
    )


def _evaluation_title(results: Mapping[str, Any]) -> str:
    dataset = str(results.get("dataset") or "unknown data")
    name = "built-in photos (held-out)" if dataset == "builtin" else f"`{dataset}`"
    details = [results.get("split"), f"{results['num_images']} images" if results.get("num_images") else None]
    if results.get("image_size"):
        details.append(f"{results['image_size']}×{results['image_size']} px")
    return name + (f" ({', '.join(str(d) for d in details if d)})" if any(details) else "")


def _level_shapes(levels, size: int) -> str:
    """`16×16 grids of tokens` for one level; `1×1, 2×2 and 3×3 grids of tokens` for levels sharing a codebook;
    `sequences of 32 tokens` for a 1-D level."""
    shapes = [level.grid_shape(size, size) for level in levels]
    first = levels[0]
    tokens = f"stacks of {first.depth} tokens" if first.depth > 1 else "tokens"
    kind = "grids" if first.is_grid else "sequences"
    sizes = ["×".join(map(str, shape)) for shape in shapes]
    sizes = sizes[0] if len(sizes) == 1 else f"{', '.join(sizes[:-1])} and {sizes[-1]}"
    return f"{sizes} {kind} of {tokens}" if first.is_grid else f"{kind} of {sizes} {tokens}"


def _codebook_text(level) -> str:
    bits = math.log2(level.codebook_size)
    return f"a codebook of {level.codebook_size:,} codes ({bits:.3g} bits per token)"


def _summary(kind: str, layout, size: int) -> str:
    # Levels that share a codebook are said once, together: a multi-scale tokenizer's ten scales are one phrase.
    groups: dict[str, list] = {}
    for level in layout.levels:
        groups.setdefault(level.codebook_name, []).append(level)
    if layout.num_levels == 1:
        grids = f"{_level_shapes(layout.levels, size)} from {_codebook_text(layout.levels[0])}"
    else:
        phrases = []
        for levels in groups.values():
            if len(levels) == 1:
                where = f"at level `{levels[0].name}`"
                phrases.append(f"{_level_shapes(levels, size)} from {_codebook_text(levels[0])} {where}")
            else:
                names = f"`{levels[0].name}` to `{levels[-1].name}`"
                phrases.append(f"{_level_shapes(levels, size)} (levels {names}) sharing {_codebook_text(levels[0])}")
        grids = "coarse to fine, " + " and ".join(phrases)
    return (
        f"A {kind} image tokenizer: {size}×{size} images become {grids}, and back. "
        "It is a `transformers` model made with hf-vq."
    )


def _token_ids_text(layout, size: int) -> str:
    """The usage snippet's comment on what `encode_to_indices` returns for one `size`×`size` image."""
    shapes = [str((1, *shape)) for shape in layout.token_shapes(size, size)]
    if layout.num_levels == 1:
        return f"{shapes[0]} token ids in [0, {layout.levels[0].codebook_size})"
    parts = [f"{shape} in [0, {level.codebook_size})" for shape, level in zip(shapes, layout.levels)]
    names = ", ".join(level.name for level in layout.levels)
    return f"tuple of token ids ({names}): " + ", ".join(parts)


def _example_input(config, low: float, high: float) -> str:
    shape = f"1, {config.in_channels}, {config.sample_size}, {config.sample_size}"
    scaled = f"torch.rand({shape})" + (f" * {high - low:g}" if high - low != 1 else "")
    return scaled + (f" - {-low:g}" if low < 0 else f" + {low:g}" if low > 0 else "")


# Card rows and model-index entries per metric: (key, label, unit, higher is better)
_METRICS = (
    ("psnr", "PSNR", " dB", True),
    ("ssim", "SSIM", "", True),
    ("lpips", "LPIPS", "", False),
    ("rfid", "rFID", "", False),
    ("kid", "KID", "", False),
    ("codebook_usage", "Codebook usage", "", True),
    ("perplexity", "Code perplexity", "", True),
)


def _how(key: str, results: Mapping[str, Any]) -> str:
    """How a metric was computed, from what the results record (parts they do not record are left out)."""
    protocol = results.get("protocol") or {}
    n = results.get("num_images")
    n_text = f"N = {n}, " if n is not None else ""
    if key == "psnr":
        return "mean of per-image PSNR on 8-bit RGB"
    if key == "ssim":
        return "Gaussian window 11, σ 1.5, on RGB"
    if key == "lpips":
        return f"LPIPS v0.1 ({protocol['lpips_net']})" if protocol.get("lpips_net") else "LPIPS v0.1"
    if key == "rfid":
        return f"{n_text}Inception-v3 pool3 (pytorch-fid weights), vs. the inputs"
    if key == "kid":
        subsets, size = protocol.get("kid_subsets"), protocol.get("kid_subset_size")
        return n_text + (f"{subsets} subsets of {size}" if subsets and size else "polynomial-kernel MMD²")
    if key == "codebook_usage":
        return "fraction of the codes used on the evaluation images"
    return "exp(entropy) of the token histogram"


def _metric_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    metrics = results.get("metrics") or {}
    rows = []
    for key, label, unit, higher in _METRICS:
        value = metrics.get(key)
        if value is None:
            continue
        text = f"{value:.4g}{unit}"
        if key == "kid" and metrics.get("kid_std") is not None:
            text = f"{value:.4g} ± {metrics['kid_std']:.2g}"
        if key == "codebook_usage":
            text = f"{100 * value:.1f} %"
        rows.append((f"{label} {'↑' if higher else '↓'}", text, _how(key, results)))
    return rows


def _eval_results(results: Mapping[str, Any]) -> list[EvalResult]:
    metrics = results.get("metrics") or {}
    if not metrics:
        return []
    dataset = str(results.get("dataset", "unknown"))
    name = "hf-vq built-in photos (held-out split)" if dataset == "builtin" else dataset
    entries = []
    for key, label, _, _ in _METRICS:
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            continue
        entries.append(
            EvalResult(
                task_type="image-to-image",
                task_name="Image reconstruction",
                dataset_type=dataset,
                dataset_name=name,
                dataset_split=results.get("split"),
                dataset_args={"num_images": results.get("num_images"), "image_size": results.get("image_size")},
                metric_type=key,
                metric_name=label,
                metric_value=round(float(value), 6),
                metric_config=_how(key, results),
            )
        )
    return entries


# ------------------------------------------------------------------------------------------------ helpers


def _has_remote_code(folder: Path) -> bool:
    config = folder / "config.json"
    return config.is_file() and bool(json.loads(config.read_text(encoding="utf-8")).get("auto_map"))


def _place_in_folder(path: Path, folder: Path) -> str:
    """File name of `path` inside `folder`, copying it there when it lives elsewhere."""
    if not path.is_absolute() and (folder / path).is_file():
        return path.as_posix()
    if not path.is_file():
        raise FileNotFoundError(f"Sample grid {path} does not exist.")
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        shutil.copyfile(path, folder / path.name)
        return path.name


def _hub_ids(datasets: Iterable[str]) -> list[str]:
    # Metadata must name Hub datasets; local folders and built-in sets are described in the body instead.
    return [d for d in datasets if re.fullmatch(r"[\w.-]+/[\w.-]+", d) and not Path(d).exists()]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"card_info values must be JSON-serialisable; got {type(value).__name__}.")
