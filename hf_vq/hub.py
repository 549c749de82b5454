"""Model cards, Hub uploads and remote-code export for hf-vq tokenizers.

Every saved model folder gets a `README.md` rendered from `model_cards/vq_tokenizer.md` with `huggingface_hub`'s
`ModelCard.from_template`, plus `card_info.json`, the inputs it was rendered from, so that `hf-vq evaluate` and
`hf-vq push` can re-render it later (adding measured results, pointing the snippets at the Hub repo) without
losing the training recipe.

`card_info` keys (a plain dict, JSON-serialisable; set `model.card_info` before `save_pretrained`, or pass the same
names to [`write_model_card`]; every key is optional):

- `"training"` (`dict`): the training recipe, rendered as a table in insertion order, e.g.
  `{"dataset": "builtin", "steps": 20000, "batch_size": 16, "learning_rate": 1e-4, "image_size": 256,
  "losses": "L1 + LPIPS(vgg16) + hinge GAN from step 5000", "precision": "bf16", "hardware": "1x A100"}`.
- `"results"` (`dict`): what [`hf_vq.evaluation.evaluate`] returns; rendered as the evaluation table and the
  card's `model-index`. Keys used: `metrics` (`psnr`, `ssim`, `lpips`, `rfid`, `kid`, `kid_std`,
  `codebook_usage`, `perplexity`; any may be missing), `dataset`, `split`, `num_images`, `image_size`,
  `protocol` (`description`, `lpips_net`, `kid_subset_size`), `command`.
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
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData

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

# model_type -> (name, Hub tag, one-line description)
_MODEL_TYPES = {
    "hf_vq_vqgan": (
        "VQ-GAN",
        "vq-gan",
        "taming-transformers / latent-diffusion convolutional autoencoder (Esser et al. 2021, arXiv:2012.09841)",
    ),
    "hf_vq_vqvae": (
        "VQ-VAE",
        "vq-vae",
        "strided-convolution autoencoder with residual stacks (van den Oord et al. 2017, arXiv:1711.00937)",
    ),
}


# ------------------------------------------------------------------------------------------------ card rendering


def model_card_template_path() -> Path:
    """The card template: `hf_vq/model_cards/` in an installed wheel, else `model_cards/` of the source tree."""
    package_dir = Path(__file__).resolve().parent
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
    info = {**load_card_info(folder), **{key: value for key, value in updates.items() if value is not None}}
    previous, model.card_info = model.card_info, info
    try:
        return write_model_card(model, folder, grid_path=grid_path)
    finally:
        model.card_info = previous


def render_model_card(model, info: Mapping[str, Any], *, remote_code: bool = False) -> ModelCard:
    """The `ModelCard` of `model` with the `card_info` dict `info` (see the module docstring)."""
    from . import __version__

    config = model.config
    kind, tag, _ = _MODEL_TYPES.get(config.model_type, (type(model).__name__, None, ""))
    results = info.get("results") or {}
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
        eval_results=_eval_results(results) or None,
    )
    factor = model.downsampling_factor
    low, high = (float(v) for v in config.pixel_range)
    return ModelCard.from_template(
        card_data,
        template_path=str(model_card_template_path()),
        hf_vq_version=__version__,
        title=name,
        summary=_summary(model, kind),
        model_class=type(model).__name__,
        model_id=model_id,
        remote_code=remote_code,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        sample_size=config.sample_size,
        token_shape=_token_shape(config),
        downsampling_factor=factor,
        codebook_size=config.num_vq_embeddings,
        pixel_range_text=f"[{low:g}, {high:g}]",
        example_input=_example_input(config, low, high),
        architecture=_architecture_rows(model, kind),
        training=[(f"`{key}`", _format_value(value)) for key, value in (info.get("training") or {}).items()],
        metrics=_metric_rows(results),
        protocol=(results.get("protocol") or {}).get("description", ""),
        evaluate_command=results.get("command", "").replace(" MODEL ", f" {shlex.quote(model_id)} ", 1),
        grid=info.get("grid"),
        grid_caption=info.get("grid_caption") or "Sample inputs and their reconstructions:",
    )


def _codebook_text(config) -> str:
    size = f"{config.num_vq_embeddings:,}"
    if config.quantizer_type == "fsq":
        return f"{size} implicit codes: levels {list(config.fsq_levels)} per channel, nothing learned"
    if config.quantizer_type == "lfq":
        return f"{size} implicit codes: {int(math.log2(config.num_vq_embeddings))} sign bits, nothing learned"
    dims = f"{config.vq_embed_dim} dims"
    if config.codebook_dim is not None:
        dims = f"{config.codebook_dim} dims (projected from {config.vq_embed_dim})"
    levels = f" at each of {config.num_quantizers} residual levels" if config.quantizer_type == "residual_vq" else ""
    return f"{size} codes × {dims}{levels}"


def _quantizer_text(config) -> str:
    kind = config.quantizer_type
    if kind == "fsq":
        return "`fsq`: finite scalar quantisation (Mentzer et al. 2023), rounding each channel to its levels"
    if kind == "lfq":
        return f"`lfq`: lookup-free quantisation (Yu et al. 2023), entropy weight {config.entropy_loss_weight:g}"
    beta_on = "commitment" if config.beta_placement == "commitment" else "codebook (taming / diffusers legacy)"
    parts = [
        "nearest-code search" + (" on l2-normalised codes" if config.codebook_l2_norm else ""),
        "EMA codebook updates" if config.codebook_update == "ema" else "codebook trained by its loss",
        f"β = {config.commitment_cost:g} on the {beta_on} term",
        "rotation-trick gradients" if config.gradient_estimator == "rotation" else "straight-through gradients",
    ]
    if config.dead_code_restart:
        parts.append("dead-code restarts")
    if config.entropy_loss_weight:
        parts.append(f"entropy loss {config.entropy_loss_weight:g}")
    return f"`{kind}`: " + ", ".join(parts)


def _token_shape(config) -> str:
    grid = config.sample_size // config.downsampling_factor
    depth = f", {config.num_quantizers}" if config.quantizer_type == "residual_vq" else ""
    return f"(1, {grid}, {grid}{depth})"


def _example_input(config, low: float, high: float) -> str:
    shape = f"1, {config.in_channels}, {config.sample_size}, {config.sample_size}"
    scaled = f"torch.rand({shape})" + (f" * {high - low:g}" if high - low != 1 else "")
    return scaled + (f" - {-low:g}" if low < 0 else f" + {low:g}" if low > 0 else "")


def _summary(model, kind: str) -> str:
    config = model.config
    factor, size = model.downsampling_factor, config.sample_size
    bits = math.log2(config.num_vq_embeddings)
    tokens = f"stacks of {config.num_quantizers} tokens" if config.quantizer_type == "residual_vq" else "tokens"
    return (
        f"A {kind} image tokenizer: {size}×{size} images become {size // factor}×{size // factor} grids of {tokens} "
        f"from a codebook of {config.num_vq_embeddings:,} codes ({bits:.3g} bits per token), and back. "
        f"It is a `transformers` model from [hf-vq](https://pypi.org/project/hf-vq/)."
    )


def _architecture_rows(model, kind: str) -> list[tuple[str, str]]:
    config = model.config
    _, _, description = _MODEL_TYPES.get(config.model_type, (kind, None, type(model).__name__))
    factor = model.downsampling_factor

    def params(module) -> int:
        return sum(p.numel() for p in module.parameters())

    encoder = params(model.encoder) + params(model.quant_conv)
    decoder = params(model.decoder) + params(model.post_quant_conv)
    quantizer_params = params(model.quantize)
    rows = [
        ("Model", f"{kind}: {description}"),
        ("Downsampling factor", f"f{factor} ({config.sample_size}² → {config.sample_size // factor}² tokens)"),
        ("Codebook", _codebook_text(config)),
        ("Quantizer", _quantizer_text(config)),
        ("Latent channels", str(config.latent_channels)),
    ]
    if config.model_type == "hf_vq_vqgan":
        attention = [i for i, t in enumerate(config.down_block_types) if t.startswith("Attn")]
        mid = " and in the mid-block" if config.mid_block_add_attention else ""
        layout = (
            f"channels {list(config.block_out_channels)}, {config.layers_per_block} ResNet block(s) per level, "
            f"self-attention at levels {attention or 'none'}{mid}, GroupNorm({config.norm_num_groups})"
        )
        rows.append(("Encoder / decoder", layout))
    elif config.model_type == "hf_vq_vqvae":
        layout = (
            f"{config.num_downsample_layers} stride-2 4×4 convs, {config.hidden_channels} channels, "
            f"{config.num_residual_layers} residual blocks ({config.residual_hidden_channels} hidden)"
        )
        rows.append(("Encoder / decoder", layout))
    total = _count(encoder + decoder + quantizer_params)
    rows += [
        (
            "Parameters",
            f"{total} (encoder {_count(encoder)}, quantizer {_count(quantizer_params)}, decoder {_count(decoder)})",
        ),
        ("Pixel range", f"[{config.pixel_range[0]:g}, {config.pixel_range[1]:g}], {config.in_channels} channels"),
    ]
    return rows


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


# ------------------------------------------------------------------------------------------------ push


def check_saved_model_folder(folder: str | os.PathLike) -> Path:
    """`folder` as a Path, or a clear error if it holds no saved model (`config.json` and `*.safetensors`)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{folder} is not a saved model folder (needs config.json and *.safetensors): save it with "
            "`model.save_pretrained(folder)` or `hf-vq train` first."
        )
    return folder


def upload_file_list(folder: str | os.PathLike) -> list[str]:
    """Paths (relative, POSIX) that [`push_folder`] uploads from `folder`, sorted.

    Weights (`*.safetensors`, shard index), `config.json`, `README.md`, `card_info.json`, `eval_results.json`,
    remote-code `*.py` files, the card's sample grid, and a discriminator when present (`discriminator/` or
    `discriminator*` files). Training state (optimizer, checkpoints, logs) stays local.
    """
    folder = check_saved_model_folder(folder)
    top_level = {"config.json", "README.md", CARD_INFO_FILENAME, EVAL_RESULTS_FILENAME}
    grid = load_card_info(folder).get("grid")
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        first = relative.split("/")[0]
        if first.startswith("discriminator"):
            files.append(relative)
        elif "/" in relative:
            continue
        elif (
            relative in top_level
            or relative == grid
            or path.suffix in (".safetensors", ".py")
            or relative.endswith(".safetensors.index.json")  # shard index of large weights
        ):
            files.append(relative)
    return files


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    update_card: bool = True,
    remote_code: bool = False,
):
    """Uploads a saved model folder to the Hub in one commit (see [`upload_file_list`] for what goes up).

    The repo is created if needed. With `update_card`, the folder's card is first re-rendered so its snippets
    use `repo_id`; with `remote_code`, the modeling code is first added to the folder (see [`add_remote_code`]).
    Both change the folder in place (`README.md`, `card_info.json`; `config.json` and `*.py`).

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    folder = check_saved_model_folder(folder)  # before the repo is created
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    model = None
    if remote_code:
        model = add_remote_code(folder, update_card=False)
    if update_card or remote_code:
        update_model_card(folder, model=model, model_id=repo_id if update_card else None)
    files = upload_file_list(folder)
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    logger.info("Uploading %d files to %s: %s", len(files), repo_id, ", ".join(files))
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message or f"Upload hf-vq model ({len(files)} files)",
        commit_description=commit_description,
        revision=revision,
        create_pr=create_pr,
    )


def push_model_to_hub(
    model,
    repo_id: str,
    *,
    remote_code: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
):
    """`model.push_to_hub`: saves weights, config and card (with `repo_id` in its snippets) to a temporary folder
    and uploads it in one commit. `remote_code=True` also ships the modeling files (see [`save_with_remote_code`]).

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    repo_id = HfApi(token=token).create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    previous = model.card_info
    model.card_info = {**(previous or {}), "model_id": repo_id}
    if tags:
        model.card_info["tags"] = [*model.card_info.get("tags", []), *tags]
    try:
        with tempfile.TemporaryDirectory() as folder:
            if remote_code:
                save_with_remote_code(model, folder, max_shard_size=max_shard_size)
            else:
                model.save_pretrained(folder, max_shard_size=max_shard_size)
            return push_folder(
                folder,
                repo_id,
                commit_message=commit_message,
                commit_description=commit_description,
                private=private,
                token=token,
                revision=revision,
                create_pr=create_pr,
                update_card=False,
            )
    finally:
        model.card_info = previous


# ------------------------------------------------------------------------------------------------ remote code


def save_with_remote_code(model, save_directory: str | os.PathLike, **save_kwargs: Any) -> list[Path]:
    """`save_pretrained` that also writes the modeling code and an `auto_map` to `config.json`, so that
    `AutoModel.from_pretrained(folder_or_repo, trust_remote_code=True)` works where only transformers is installed.

    transformers copies the model's and config's module files and, recursively, the same-folder modules they
    import relatively (`hf_vq/modeling` is flat for this reason). The class-level registration transformers
    uses for this (`register_for_auto_class`) is undone afterwards, so later plain saves stay plain.

    Returns:
        `list[Path]`: the `.py` files written.
    """
    save_directory = Path(save_directory)
    classes = ((type(model), "AutoModel"), (type(model.config), "AutoConfig"))
    saved = [(cls, cls.__dict__.get("_auto_class", _MISSING)) for cls, _ in classes]
    previous_auto_map = model.config.auto_map if "auto_map" in model.config.__dict__ else _MISSING
    for cls, auto_class in classes:
        cls._auto_class = auto_class
    try:
        model.save_pretrained(save_directory, **save_kwargs)
    finally:
        for cls, value in saved:
            if value is _MISSING:
                del cls._auto_class
            else:
                cls._auto_class = value
        if previous_auto_map is _MISSING:
            model.config.__dict__.pop("auto_map", None)
        else:
            model.config.auto_map = previous_auto_map
    return sorted(save_directory.glob("*.py"))


_MISSING = object()


def add_remote_code(folder: str | os.PathLike, *, update_card: bool = True):
    """Adds the modeling code and an `auto_map` to an already saved model folder (weights are not rewritten), so
    that it loads with `trust_remote_code=True` where hf-vq is not installed. Returns the model loaded from it."""
    from transformers.dynamic_module_utils import custom_object_save

    folder = Path(folder)
    model = _load_folder_model(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # Instance attributes, not transformers' class-level `register_for_auto_class`: nothing global changes.
    model.config._auto_class, model._auto_class = "AutoConfig", "AutoModel"
    custom_object_save(model.config, folder, config=config)
    custom_object_save(model, folder, config=config)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if update_card:
        update_model_card(folder, model=model)
    return model


def _load_folder_model(folder: Path):
    from transformers import AutoModel

    from . import modeling  # noqa: F401  (registers the hf-vq model types with AutoModel)

    return AutoModel.from_pretrained(folder)


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


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


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
