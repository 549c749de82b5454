"""VQ-VAE-2: two token grids, the bottom conditioned on the top, through the same API as the single-grid models."""

import numpy as np
import pytest
import torch
from skimage import data as skdata
from transformers import AutoConfig, AutoModel

from hf_vq import VQVAE2Config, VQVAE2Model

TINY = dict(
    hidden_channels=16,
    residual_hidden_channels=8,
    num_residual_layers=1,
    latent_channels=8,
    num_vq_embeddings=32,
    vq_embed_dim=4,
    top_num_vq_embeddings=16,
    top_vq_embed_dim=4,
    sample_size=32,
)


def tiny(**overrides) -> VQVAE2Model:
    torch.manual_seed(0)
    return VQVAE2Model(VQVAE2Config(**{**TINY, **overrides}))


def photos(size: int = 32) -> torch.Tensor:
    images = [torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1).float() / 127.5 - 1 for p in (skdata.astronaut(), skdata.coffee())]
    return torch.stack([torch.nn.functional.interpolate(i[None], size=(size, size), mode="area")[0] for i in images])


@pytest.mark.parametrize("size", [32, 48, 64])
def test_both_levels_have_the_documented_shapes(size):
    model = tiny().eval()
    with torch.no_grad():
        top, bottom = model.encode_to_indices(photos(size))
    assert top.shape == (2, size // 8, size // 8) and bottom.shape == (2, size // 4, size // 4)
    assert [tuple(t.shape[1:]) for t in (top, bottom)] == model.token_layout.token_shapes(size, size)
    assert int(top.max()) < 16 and int(bottom.max()) < 32


def test_size_not_divisible_by_the_top_factor_names_the_nearest_valid_size():
    with pytest.raises(ValueError, match="top grid's downsampling factor 8.*36x36.*32x32"):
        tiny()(photos(36))
    with pytest.raises(ValueError, match="sample_size"):
        VQVAE2Config(**{**TINY, "sample_size": 36})


def test_decoding_the_ids_equals_the_forward_reconstruction_in_eval():
    model = tiny().eval()
    with torch.no_grad():
        output = model(photos())
        assert torch.equal(model.decode_indices(output.indices), output.reconstruction)
        assert all(torch.equal(a, b) for a, b in zip(model.encode_to_indices(photos()), output.indices))


def test_save_load_and_auto_round_trip_exactly(tmp_path):
    model = tiny(kmeans_init=True, codebook_update="ema").train()
    model(photos())  # k-means + EMA statistics and health counters move
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").is_file()
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "VQVAE2Config"
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, VQVAE2Model)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(photos()).reconstruction, loaded(photos()).reconstruction)


def test_each_term_trains_what_it_should():
    """Reconstruction reaches both encoders and the decoder; the codebook terms reach the codebooks; the
    commitment terms reach the encoders but not the codebooks."""
    model = tiny().train()
    output = model(photos())

    def touched(loss) -> set[str]:
        model.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}

    reconstruction = touched(output.reconstruction_loss)
    assert any(n.startswith("top_encoder.") for n in reconstruction) and any(n.startswith("encoder.") for n in reconstruction)
    assert any(n.startswith("decoder.") for n in reconstruction)
    codebook = touched(output.codebook_loss)
    assert {"quantize_top.embedding.weight", "quantize_bottom.embedding.weight"} <= codebook
    assert not any("encoder" in n for n in codebook)
    commitment = touched(output.commitment_loss)
    assert any(n.startswith("top_encoder.") for n in commitment) and any(n.startswith("encoder.") for n in commitment)
    assert not any("embedding" in n for n in commitment)


def test_statistics_are_reported_per_level():
    model = tiny().eval()
    with torch.no_grad():
        output = model(photos())
    top, bottom = output.indices
    expected_top = len(torch.unique(top)) / 16
    assert float(output.top_codebook_usage) == pytest.approx(expected_top)
    assert float(output.bottom_codebook_usage) == pytest.approx(len(torch.unique(bottom)) / 32)
    assert float(output.codebook_usage) == pytest.approx((expected_top + len(torch.unique(bottom)) / 32) / 2)
    counts = model.token_layout.count_codes(output.indices)
    assert [int(c.sum()) for c in counts] == [top.numel(), bottom.numel()]


@pytest.mark.parametrize("quantizer", [dict(quantizer_type="fsq", fsq_levels=[8, 4], top_fsq_levels=[4, 4]),
                                       dict(quantizer_type="lfq", num_vq_embeddings=32, top_num_vq_embeddings=16)])
def test_other_quantizers_of_the_family_serve_both_levels(quantizer):
    model = tiny(**quantizer).eval()
    with torch.no_grad():
        ids = model.encode_to_indices(photos())
        assert model.decode_indices(ids).shape == (2, 3, 32, 32)
    assert [level.codebook_size for level in model.token_layout.levels] == [16, 32]


@pytest.mark.parametrize(
    "make_ids, error, match",
    [
        (lambda: (torch.full((1, 4, 4), 16), torch.zeros(1, 8, 8, dtype=torch.long)), ValueError, r"'top'.*\[0, 16\)"),
        (lambda: torch.zeros(1, 8, 8, dtype=torch.long), ValueError, "2 levels"),
        (lambda: (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long)), ValueError, "one size"),
        (lambda: (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 8, 8)), TypeError, "integer"),
    ],
    ids=["out-of-range", "one-level", "mismatched-grids", "float"],
)
def test_bad_ids_raise_clear_errors(make_ids, error, match):
    with pytest.raises(error, match=match):
        tiny().decode_indices(make_ids())


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="top_fsq_levels"):
        VQVAE2Config(**TINY, quantizer_type="fsq", fsq_levels=[8, 4])
    with pytest.raises(ValueError, match="quantizer_type"):
        VQVAE2Config(**TINY, quantizer_type="residual_vq", num_quantizers=2)
    with pytest.raises(ValueError, match="top_num_vq_embeddings"):
        VQVAE2Config(**{**TINY, "top_num_vq_embeddings": 0})


def test_hidden_states_follow_transformers_conventions():
    model = VQVAE2Model(VQVAE2Config(**{**TINY, "output_hidden_states": True})).eval()
    with torch.no_grad():
        asked = model(photos())
        plain = model(photos(), output_hidden_states=False)
        as_tuple = model(photos(), return_dict=False)
    # bottom encoder (2 strided convs, residual stack) | top encoder | top decoder | decoder
    shapes = [(16, 16, 16), (16, 8, 8), (16, 8, 8), (16, 4, 4), (16, 4, 4), (16, 4, 4), (16, 8, 8), (16, 16, 16)]
    assert [tuple(h.shape[1:]) for h in asked.hidden_states] == shapes
    assert plain.hidden_states is None and type(plain) is type(asked)
    assert torch.equal(plain.reconstruction, asked.reconstruction)
    assert isinstance(as_tuple, tuple) and len(as_tuple[-1]) == len(shapes)


def test_diffusers_export_says_why_not():
    with pytest.raises(ValueError, match="two token grids"):
        tiny().to_diffusers()


# ------------------------------------------------------------------------------------------------ hf-vq train


def train_flags(output_dir, *extra):
    import json

    return [
        "--model-type", "vqvae2", "--model-config", json.dumps(TINY), "--output-dir", str(output_dir),
        "--resolution", "32", "--train-batch-size", "2", "--dataloader-num-workers", "0", "--report-to", "none",
        "--num-eval-images", "3", "--lr-warmup-steps", "0", "--image-logging-steps", "0", "--eval-steps", "0",
        *extra,
    ]  # fmt: skip


def test_hf_vq_train_trains_vqvae2_with_per_level_statistics_card_and_grid(tmp_path):
    import json

    from hf_vq.training import parse_args, train

    assert train(parse_args(train_flags(tmp_path, "--max-train-steps", "3", "--checkpointing-steps", "0"))) == 0
    model = VQVAE2Model.from_pretrained(tmp_path)
    assert model.config.kmeans_init  # the recommended quantizer options reach both levels
    assert model.quantize_top.kmeans_done and model.quantize_bottom.kmeans_done
    assert not (tmp_path / "discriminator").exists()
    assert (tmp_path / "samples.png").is_file()
    metrics = json.loads((tmp_path / "card_info.json").read_text())["results"]["metrics"]
    assert {"psnr", "codebook_usage", "codebook_usage/top", "codebook_usage/bottom"} <= set(metrics)
    assert metrics["codebook_usage"] == pytest.approx((metrics["codebook_usage/top"] + metrics["codebook_usage/bottom"]) / 2)
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
    config = VQPriorConfig.from_tokenizer(
        tokenizer, num_classes=2, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    prior = VQPriorForCausalLM(config).eval()
    pipe = VQImagePipeline(vqvae=tokenizer, transformer=prior)
    top, bottom = pipe(class_labels=[0, 1], guidance_scale=2.0, generator=torch.manual_seed(0), output_type="latent").images
    assert top.shape == (2, 4, 4) and bottom.shape == (2, 8, 8)
    assert int(top.max()) < 16 and int(bottom.max()) < 32  # each level only ever gets its own codes
    images = pipe(class_labels=[0, 1], guidance_scale=2.0, generator=torch.manual_seed(0), output_type="pt").images
    assert images.shape == (2, 3, 32, 32)
    torch.testing.assert_close(images, ((tokenizer.decode_indices((top, bottom)) + 1) / 2).clamp(0, 1))
