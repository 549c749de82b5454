"""Shipping the modeling code with a saved model, so that it loads with `trust_remote_code=True` where only
transformers is installed."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from .cards import _load_folder_model, update_model_card

_MISSING = object()


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


def remote_code_files(folder: str | os.PathLike) -> list[str]:
    """Names of the `.py` files [`add_remote_code`] (`hf-vq push --remote-code`) would write into a saved model
    folder, found without writing anything: the modules of the model's and config's classes and, recursively, the
    same-folder modules they import relatively (what transformers' `custom_object_save` copies)."""
    from transformers import AutoConfig, AutoModel
    from transformers.dynamic_module_utils import get_relative_import_files

    from ..modeling import VQPreTrainedModel  # noqa: F401  (registers the hf-vq models with the Auto classes)

    config = AutoConfig.from_pretrained(folder)
    model_class = AutoModel._model_mapping[type(config)]
    names = set()
    for cls in (model_class, type(config)):
        module_file = inspect.getfile(cls)
        names.add(Path(module_file).name)
        names.update(Path(path).name for path in get_relative_import_files(module_file))
    return sorted(names)
