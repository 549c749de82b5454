"""Loading what hf-vq saves, in one place: a model (tokenizer, prior, discriminator) by folder or Hub id, and a
generation pipeline.

Every command and trainer loads through [`load_model`], so a missing folder, a folder that is not a model, a
truncated weights file or a model of the wrong kind gets the same one-paragraph message, naming the flag the user
gave it with. A missing local path is never sent to the Hub.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .data.locations import hub_is_offline, looks_like_local_path, missing_source_message

logger = logging.getLogger(__name__)


def default_device(name: str | torch.device | None = None) -> torch.device:
    """`name`, else CUDA when available, else the CPU. A name torch does not know, or a CUDA device on a machine
    without one, is a `ValueError` naming `--device` (commands pass their flag's value here before loading)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"--device {name!r} is not a device ({reason}). Use e.g. cpu, cuda or cuda:1.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: no CUDA device is available here. Use --device cpu, or leave it unset.")
    return device


# Files of weights in pickle format: transformers would unpickle them (with torch's restricted unpickler).
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "diffusion_pytorch_model.bin", "model.ckpt")
JSON_FILES = ("config.json", "generation_config.json", "model_index.json")


def check_model_folder(folder: Path, flag: str, name: str) -> None:
    """Raises a one-paragraph error naming the file when a local model folder holds a JSON file that does not parse
    (`config.json`, `generation_config.json`, `model_index.json`: transformers names the first and silently ignores
    the second), or weights in pickle format only, which hf-vq does not load."""
    for json_name in JSON_FILES:
        path = folder / json_name
        if path.is_file():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                reason = " ".join(str(error).split())[:200]
                raise ValueError(
                    f"{flag} {name!r}: {path} is not valid JSON ({reason}). The file is damaged: restore it from "
                    "where the model came from, or save the model again with save_pretrained."
                ) from None
    pickles = [folder / weights for weights in PICKLE_WEIGHTS if (folder / weights).is_file()]
    if pickles and not any(folder.glob("*.safetensors")):
        target = str(folder).replace("'", "\\'")
        raise ValueError(
            f"{flag} {name!r}: {pickles[0]}: weights in pickle format are not loaded (unpickling a crafted file "
            "runs its author's code); convert to safetensors with `python -c \"import hf_vq.modeling, transformers; "
            f"transformers.AutoModel.from_pretrained('{target}', use_safetensors=False).save_pretrained('{target}')\"`"
            f" where you trust the file (it writes model.safetensors beside it), then delete {pickles[0].name}."
        )


def load_model(
    name_or_path: str,
    expected: type | tuple[type, ...] | None = None,
    *,
    flag: str = "model",
    auto_class: str = "AutoModel",
    subfolder: str = "",
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
):
    """The hf-vq model saved in the folder or Hub repo `name_or_path`, through transformers' `auto_class`.

    Args:
        name_or_path (`str`):
            A folder written by `save_pretrained` (or `hf-vq train`), or a Hub model id.
        expected (`type` or `tuple` of `type`, *optional*):
            The kind of model the caller can use (e.g. `VQPreTrainedModel` for a tokenizer); another kind raises a
            `ValueError` naming both.
        flag (`str`, *optional*, defaults to `"model"`):
            How the user gave `name_or_path` (`"--init-from"`, `"tokenizer"`): every message starts with it.
        auto_class (`str`, *optional*, defaults to `"AutoModel"`):
            The transformers Auto class that reads its config (`"AutoModelForCausalLM"` for a prior).
        subfolder (`str`, *optional*):
            A folder inside `name_or_path` (a pipeline's `vqvae`, `transformer`).
        device (`str` or `torch.device`, *optional*):
            Where to put the model; `None` leaves it where `from_pretrained` built it (the CPU).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Allow models that ship their own code.

    The model comes back in train mode, as `from_pretrained` returns it: freezing and `eval()` are the caller's
    choice.
    """
    import transformers
    from safetensors import SafetensorError

    from .modeling import VQPreTrainedModel  # noqa: F401  (registers the hf-vq models with the Auto classes)

    path = Path(name_or_path).expanduser()
    folder = path / subfolder
    if path.exists() and not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{flag} {name_or_path!r}: {folder} is not a model folder (no config.json in it). Give a folder written "
            "by save_pretrained or an hf-vq command, or a Hub model id."
        )
    if not path.exists() and looks_like_local_path(name_or_path):
        raise FileNotFoundError(missing_source_message(name_or_path, flag, "model"))
    if path.exists():
        check_model_folder(folder, flag, name_or_path)
    loader = getattr(transformers, auto_class)
    try:
        model = loader.from_pretrained(
            name_or_path, subfolder=subfolder, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except SafetensorError as error:
        raise OSError(
            f"{flag} {name_or_path!r}: a weights file in it is incomplete or corrupt (safetensors: {error}). Save or "
            "download the model again."
        ) from None
    except OSError as error:
        detail = " ".join(str(error).split())
        if path.exists():  # e.g. an incomplete weights file: transformers' message names it
            raise OSError(f"{flag} {name_or_path!r}: {detail}") from None
        message = missing_source_message(name_or_path, flag, "model")
        raise FileNotFoundError(message if hub_is_offline() else f"{message} (transformers: {detail[:200]})") from None
    if expected is not None and not isinstance(model, expected):
        kinds = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join(kind.__name__ for kind in kinds)
        raise ValueError(f"{flag} {name_or_path!r} holds a {type(model).__name__}; expected a {names}.")
    return model.to(device) if device is not None else model


def load_tokenizer(name_or_path: str, device: str | torch.device | None = None, *, flag: str = "tokenizer", **kwargs):
    """An hf-vq tokenizer ([`load_model`] of a `VQPreTrainedModel`), frozen and in eval mode."""
    from .modeling import VQPreTrainedModel

    model = load_model(name_or_path, VQPreTrainedModel, flag=flag, device=device, **kwargs)
    return model.eval().requires_grad_(False)


def load_pipeline(name: str, tokenizer: str | None = None, device: torch.device | str = "cpu"):
    """A `VQImagePipeline` from a pipeline folder (`hf-vq train-prior`'s output) or Hub id, or from a prior alone
    (folder / Hub id with `config.json`) plus its tokenizer (`tokenizer`, else the one its config records). The
    prior may be of any family: it is found by its config's `model_type` through `AutoModel`, where every family
    registers, and must implement the prior interface (`VQPriorMixin`)."""
    from .modeling import VQPriorMixin
    from .pipelines import VQImagePipeline

    folder = Path(name).expanduser()
    if (folder / "model_index.json").is_file():
        check_model_folder(folder, "pipeline", name)
        for part in ("vqvae", "transformer"):
            check_model_folder(folder / part, "pipeline", name)
    if (folder / "model_index.json").is_file() or not folder.exists():
        try:
            pipe = VQImagePipeline.from_pretrained(name, use_safetensors=True)
        except (OSError, ValueError) as error:
            if folder.exists():
                raise
            logger.info("%s is not a pipeline (%s); loading it as a prior", name, error)
            pipe = None
        if pipe is not None:
            if tokenizer is not None:
                pipe = VQImagePipeline(vqvae=load_tokenizer(tokenizer), transformer=pipe.transformer)
            return pipe.to(device)
    prior = load_model(name, VQPriorMixin, flag="prior")
    source = tokenizer or prior.config.tokenizer_name_or_path
    if source is None:
        raise ValueError(f"{name} does not record its tokenizer: pass --tokenizer (folder or Hub id).")
    return VQImagePipeline(vqvae=load_tokenizer(source), transformer=prior.eval()).to(device)


__all__ = ["check_model_folder", "default_device", "load_model", "load_pipeline", "load_tokenizer"]
