"""VQ-VAE-2's own behaviour: two token grids, the bottom conditioned on the top, statistics per level, its own
errors, training and sampling. What every model does (save/load, which loss trains which parameters, decoding the
ids = the forward pass, bad ids, config errors, hidden states) is checked with VQ-VAE-2 in the shared ModelTester
set: `test_modeling.py` and `test_transformers_conventions.py` (`helpers/model_testers.py`)."""

import json

import pytest
import torch

from hf_vq import VQVAE2Model

from helpers import TINY_TRANSFORMER, photo_batch, tiny_train_flags, tiny_vqvae2_config


def tiny(**overrides) -> VQVAE2Model:
    torch.manual_seed(0)
    return VQVAE2Model(tiny_vqvae2_config(**overrides))


@pytest.mark.parametrize("size", [32, 48, 64])
def test_both_levels_have_the_documented_shapes(size):
    model = tiny().eval()
    with torch.no_grad():
        top, bottom = model.encode_to_indices(photo_batch(size))
    assert top.shape == (2, size // 8, size // 8) and bottom.shape == (2, size // 4, size // 4)
    assert [tuple(t.shape[1:]) for t in (top, bottom)] == model.token_layout.token_shapes(size, size)
    assert int(top.max()) < 16 and int(bottom.max()) < 32


def test_size_not_divisible_by_the_top_factor_names_the_nearest_valid_size():
    # 36 is divisible by the bottom grid's factor 4, not by the top's 8. (The config's `sample_size=36` error is a
    # shared config check.)
    with pytest.raises(ValueError, match="top grid's downsampling factor 8.*36x36.*32x32"):
        tiny()(photo_batch(36))


def test_statistics_are_reported_per_level():
    model = tiny().eval()
    with torch.no_grad():
        output = model(photo_batch())
    top, bottom = output.indices
    expected_top = len(torch.unique(top)) / 16
    assert float(output.top_codebook_usage) == pytest.approx(expected_top)
    assert float(output.bottom_codebook_usage) == pytest.approx(len(torch.unique(bottom)) / 32)
    assert float(output.codebook_usage) == pytest.approx((expected_top + len(torch.unique(bottom)) / 32) / 2)


@pytest.mark.parametrize(
    "quantizer",
    [
        {"quantizer_type": "fsq", "fsq_levels": [8, 4], "top_fsq_levels": [4, 4]},
        {"quantizer_type": "lfq", "num_vq_embeddings": 32, "top_num_vq_embeddings": 16},
    ],
)
def test_other_quantizers_of_the_family_serve_both_levels(quantizer):
    model = tiny(**quantizer).eval()
    with torch.no_grad():
        ids = model.encode_to_indices(photo_batch())
        assert model.decode_indices(ids).shape == (2, 3, 32, 32)
    assert [level.codebook_size for level in model.token_layout.levels] == [16, 32]


@pytest.mark.parametrize(
    "make_ids, match",
    [
        (lambda: torch.zeros(1, 8, 8, dtype=torch.long), "2 levels"),
        (lambda: (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long)), "one size"),
    ],
    ids=["one-level", "mismatched-grids"],
)
def test_ids_that_are_not_two_grids_of_one_image_raise_clear_errors(make_ids, match):
    """What only a hierarchy can get wrong; bad ids within a level are a shared check."""
    with pytest.raises(ValueError, match=match):
        tiny().decode_indices(make_ids())


def test_diffusers_export_says_why_not():
    with pytest.raises(ValueError, match="two token grids"):
        tiny().to_diffusers()


# ------------------------------------------------------------------------------------------------ hf-vq train


def train_flags(output_dir, *extra):
    schedule = ["--lr-warmup-steps", "0", "--image-logging-steps", "0", "--eval-steps", "0"]
    return tiny_train_flags(output_dir, *schedule, *extra, model_type="vqvae2", num_eval_images=3)


def test_hf_vq_train_trains_vqvae2_with_per_level_statistics_card_and_grid(tmp_path):
    from hf_vq.training import parse_args, train

    assert train(parse_args(train_flags(tmp_path, "--max-train-steps", "3", "--checkpointing-steps", "0"))) == 0
    model = VQVAE2Model.from_pretrained(tmp_path)
    assert model.config.kmeans_init  # the recommended quantizer options reach both levels
    assert model.quantize_top.kmeans_done and model.quantize_bottom.kmeans_done
    assert not (tmp_path / "discriminator").exists()
    assert (tmp_path / "samples.png").is_file()
    metrics = json.loads((tmp_path / "card_info.json").read_text())["results"]["metrics"]
    assert {"psnr", "codebook_usage", "codebook_usage/top", "codebook_usage/bottom"} <= set(metrics)
    mean = (metrics["codebook_usage/top"] + metrics["codebook_usage/bottom"]) / 2
    assert metrics["codebook_usage"] == pytest.approx(mean)
    card = (tmp_path / "README.md").read_text()
    assert "VQ-VAE-2" in card and "top" in card and "bottom" in card


@pytest.mark.slow
def test_hf_vq_train_resumes_vqvae2_exactly(tmp_path):
    from safetensors.torch import load_file

    from hf_vq.training import parse_args, train

    # A constant schedule, so that the resumed run's first half (a 2-step budget) trains as the straight run did.
    def run(folder, steps, *extra):
        flags = train_flags(folder, "--lr-scheduler", "constant_with_warmup", "--checkpointing-steps", "2", *extra)
        assert train(parse_args([*flags, "--max-train-steps", str(steps)])) == 0

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(straight, 4)
    run(resumed, 2)
    run(resumed, 4, "--resume-from-checkpoint", "latest")
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ generation


def test_vq_image_pipeline_samples_top_then_bottom(tmp_path):
    from hf_vq import VQPriorConfig, VQPriorForCausalLM
    from hf_vq.pipelines import VQImagePipeline

    tokenizer = tiny().eval()
    transformer = {**TINY_TRANSFORMER, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}
    config = VQPriorConfig.from_tokenizer(tokenizer, num_classes=2, **transformer)
    torch.manual_seed(0)
    prior = VQPriorForCausalLM(config).eval()
    pipe = VQImagePipeline(vqvae=tokenizer, transformer=prior)
    sample = {"class_labels": [0, 1], "guidance_scale": 2.0}
    top, bottom = pipe(**sample, generator=torch.manual_seed(0), output_type="latent").images
    assert top.shape == (2, 4, 4) and bottom.shape == (2, 8, 8)
    assert int(top.max()) < 16 and int(bottom.max()) < 32  # each level only ever gets its own codes
    images = pipe(**sample, generator=torch.manual_seed(0), output_type="pt").images
    assert images.shape == (2, 3, 32, 32)
    torch.testing.assert_close(images, ((tokenizer.decode_indices((top, bottom)) + 1) / 2).clamp(0, 1))
