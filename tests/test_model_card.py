"""Model cards: metadata that `huggingface_hub` parses back, an architecture summary that matches the model, a
usage snippet that runs, and re-rendering that keeps what earlier steps recorded."""

from __future__ import annotations

import json
import re

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

from hf_vq import TokenLayout, TokenLevel, VQGANConfig, VQGANModel, VQVAEConfig, VQVAEModel
from hf_vq.hub import (
    CARD_INFO_FILENAME,
    load_card_info,
    model_card_template_path,
    render_model_card,
    update_model_card,
    write_model_card,
)

from helpers import TINY_VQGAN as TINY

RESULTS = {
    "metrics": {
        "psnr": 21.5,
        "ssim": 0.61,
        "lpips": 0.21,
        "rfid": 12.5,
        "kid": 0.004,
        "kid_std": 0.001,
        "codebook_usage": 0.75,
        "perplexity": 9.5,
        "tokens": 4096,
    },
    "num_images": 16,
    "image_size": 32,
    "dataset": "builtin",
    "split": None,
    "protocol": {
        "description": "16 images from `builtin`: pinned.",
        "lpips_net": "alexnet",
        "kid_subset_size": 8,
        "kid_subsets": 100,
    },
    "command": "hf-vq evaluate MODEL --dataset builtin --num-images 16 --image-size 32",
}


@pytest.fixture
def model() -> VQGANModel:
    return VQGANModel(VQGANConfig(**TINY)).eval()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_template_ships_with_the_package():
    assert model_card_template_path().name == "vq_tokenizer.md"
    assert "{{ card_data }}" in model_card_template_path().read_text()


def test_save_pretrained_writes_a_card_whose_metadata_parses(model, tmp_path):
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "hf-vq"
    assert card.data.license == "apache-2.0"
    assert {"hf-vq", "vq-gan", "image-tokenizer", "vector-quantization"} <= set(card.data.tags)
    assert card.data.eval_results is None and card.data.base_model is None
    assert json.loads((tmp_path / CARD_INFO_FILENAME).read_text()) == {"model_id": str(tmp_path)}
    text = card.text
    assert "| Downsampling factor | f2 (32² → 16² tokens) |" in text
    assert "| Codebook | 16 codes × 4 dims |" in text
    total = model.num_parameters()
    assert f"| Parameters | {total / 1e3:.3g}K (encoder" in text
    assert "β = 0.25 on the commitment term" in text
    assert "No training recipe was recorded" in text
    assert "Not evaluated yet" in text
    assert "trust_remote_code" not in text  # no code was shipped, so no transformers-only snippet


def test_usage_snippet_runs_and_reproduces_the_model(model, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "tokenizer")
    monkeypatch.chdir(tmp_path)
    card = ModelCard.load(tmp_path / "tokenizer" / "README.md")
    (snippet,) = python_blocks(card.text)
    assert 'VQGANModel.from_pretrained("' in snippet
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["tokens"].shape == (1, 16, 16)
    assert namespace["images"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        expected = model.decode_indices(namespace["tokens"])
    assert torch.allclose(namespace["images"], expected, atol=1e-6)


def test_card_reports_results_training_datasets_and_base_model(model, tmp_path):
    grid = tmp_path / "elsewhere.png"
    Image.new("RGB", (8, 4)).save(grid)
    model.card_info = {
        "training": {"dataset": "org/photos", "steps": 1000, "learning_rate": 1e-4, "losses": ["l1", "lpips"]},
        "datasets": ["org/photos", "builtin"],
        "tags": ["faces"],
    }
    folder = tmp_path / "model"
    write_model_card(
        model, folder, results=RESULTS, base_model="org/base-vqgan", grid_path=grid, grid_caption="Eight views."
    )
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "org/base-vqgan"
    assert card.data.datasets == ["org/photos"]  # only Hub ids go to the metadata
    assert "faces" in card.data.tags
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"psnr", "ssim", "lpips", "rfid", "kid", "codebook_usage", "perplexity"}
    assert results["rfid"].metric_value == 12.5
    assert results["rfid"].dataset_args == {"num_images": 16, "image_size": 32}
    assert results["rfid"].task_type == "image-to-image"
    assert card.data.model_name == str(folder)
    text = card.text
    assert "| PSNR ↑ | 21.5 dB | mean of per-image PSNR on 8-bit RGB |" in text
    assert "| rFID ↓ | 12.5 | N = 16, Inception-v3 pool3 (pytorch-fid weights), vs. the inputs |" in text
    assert "| KID ↓ | 0.004 ± 0.001 | N = 16, 100 subsets of 8 |" in text
    assert "| Codebook usage ↑ | 75.0 % | fraction of the codes used on the evaluation images |" in text
    assert "| LPIPS ↓ | 0.21 | LPIPS v0.1 (alexnet) |" in text
    assert "**Protocol.** 16 images from `builtin`: pinned." in text
    assert f"hf-vq evaluate {folder} --dataset builtin --num-images 16 --image-size 32" in text
    assert "| `learning_rate` | 0.0001 |" in text and "| `losses` | l1, lpips |" in text
    assert "Eight views.\n\n![Reconstructions](elsewhere.png)" in text
    assert (folder / "elsewhere.png").is_file()  # copied next to the card so the Hub can show it


def test_update_keeps_the_recorded_recipe_and_adds_results(model, tmp_path):
    model.card_info = {"training": {"steps": 7}}
    model.save_pretrained(tmp_path)
    update_model_card(tmp_path, results=RESULTS)  # loads the model from the folder
    info = load_card_info(tmp_path)
    assert info["training"] == {"steps": 7} and info["results"]["metrics"]["psnr"] == 21.5
    text = (tmp_path / "README.md").read_text()
    assert "| `steps` | 7 |" in text and "| PSNR ↑ | 21.5 dB |" in text
    # A new save of other weights starts from that model's own card_info: stale results are not carried over.
    VQGANModel(VQGANConfig(**TINY)).save_pretrained(tmp_path)
    assert "Not evaluated yet" in (tmp_path / "README.md").read_text()


def test_unknown_card_info_keys_are_rejected(model, tmp_path):
    model.card_info = {"trainng": {}}
    with pytest.raises(ValueError, match="trainng"):
        write_model_card(model, tmp_path)
    with pytest.raises(ValueError, match="bogus"):
        model.card_info = None
        model.save_pretrained(tmp_path)
        update_model_card(tmp_path, model=model, bogus=1)


def test_vqvae_card(tmp_path):
    model = VQVAEModel(
        VQVAEConfig(
            hidden_channels=16, residual_hidden_channels=8, latent_channels=4, num_vq_embeddings=32, sample_size=16
        )
    )
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert "vq-vae" in card.data.tags
    assert "| Downsampling factor | f4 (16² → 4² tokens) |" in card.text
    assert "2 stride-2 4×4 convs, 16 channels" in card.text
    assert "from hf_vq import VQVAEModel" in python_blocks(card.text)[0]


@pytest.mark.parametrize(
    ("quantizer", "codebook_row", "token_shape"),
    [
        (
            {"quantizer_type": "fsq", "fsq_levels": [4, 4], "vq_embed_dim": 2},
            "16 implicit codes: levels [4, 4]",
            (1, 16, 16),
        ),
        (
            {"quantizer_type": "residual_vq", "num_quantizers": 2},
            "16 codes × 4 dims at each of 2 residual levels",
            (1, 16, 16, 2),
        ),
    ],
)
def test_cards_of_other_quantizers_describe_them_and_their_snippet_runs(
    tmp_path, quantizer, codebook_row, token_shape
):
    model = VQGANModel(VQGANConfig(**{**TINY, **quantizer})).eval()
    model.save_pretrained(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert f"| Codebook | {codebook_row}" in text
    assert f"`{quantizer['quantizer_type']}`" in text
    (snippet,) = python_blocks(text)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert tuple(namespace["tokens"].shape) == token_shape
    assert f"# {token_shape} token ids" in snippet


def test_partial_results_render_without_placeholders(model, tmp_path):
    """`hf-vq train` records only PSNR / SSIM / code usage: the card shows those and invents nothing."""
    results = {"metrics": {"psnr": 18.25, "codebook_usage": 0.5}, "dataset": "builtin", "protocol": {}}
    write_model_card(model, tmp_path, results=results)
    text = (tmp_path / "README.md").read_text()
    assert "| PSNR ↑ | 18.25 dB |" in text and "| Codebook usage ↑ | 50.0 % |" in text
    assert "rFID" not in text.split("## Evaluation")[1] and "?" not in text.split("## Evaluation")[1]
    card = ModelCard.load(tmp_path / "README.md")
    assert {r.metric_type for r in card.data.eval_results} == {"psnr", "codebook_usage"}


class TwoLevelTokenizer(VQVAEModel):
    """A stand-in for a hierarchical tokenizer: only what a card reads (its self-description and token layout)."""

    model_card_name = "VQ-VAE-2 stand-in"
    model_card_tag = "two-level"
    model_card_description = "two token grids, coarse to fine"

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout((TokenLevel("top", 8, 8), TokenLevel("bottom", 4, 32)))


def test_card_of_a_two_level_tokenizer_comes_from_what_the_model_says():
    """The card knows no model type: a new tokenizer with two token grids gets a correct card by describing itself."""
    model = TwoLevelTokenizer(
        VQVAEConfig(
            hidden_channels=16, residual_hidden_channels=8, latent_channels=4, num_vq_embeddings=32, sample_size=16
        )
    )
    card = render_model_card(model, {"model_id": "org/two"})
    assert "two-level" in card.data.tags and "vq-vae" not in card.data.tags
    text = card.text
    assert "A VQ-VAE-2 stand-in image tokenizer: 16×16 images become coarse to fine, 2×2 grids of tokens " in text
    assert "from a codebook of 8 codes (3 bits per token) at level `top` and 4×4 grids of tokens from a " in text
    assert "codebook of 32 codes (5 bits per token) at level `bottom`, and back." in text
    assert "| Model | VQ-VAE-2 stand-in: two token grids, coarse to fine |" in text
    assert "| Downsampling factor (top) | f8 (16² → 2² tokens) |" in text
    assert "| Downsampling factor (bottom) | f4 (16² → 4² tokens) |" in text
    (snippet,) = python_blocks(text)
    assert "H and W divisible by 8." in snippet
    assert "# tuple of token ids (top, bottom): (1, 2, 2) in [0, 8), (1, 4, 4) in [0, 32)" in snippet


def test_saving_a_loaded_trained_model_keeps_its_recipe_results_and_grid(model, tmp_path):
    """Quick start: `from_pretrained(run)` then `save_pretrained("my-vqgan")` keeps what the run's card said."""
    run = tmp_path / "run"
    run.mkdir()
    Image.new("RGB", (16, 8)).save(run / "samples.png")
    model.card_info = {"training": {"steps": 400}, "results": RESULTS, "grid": "samples.png"}
    model.save_pretrained(run)
    loaded = VQGANModel.from_pretrained(run)
    assert loaded.card_info["training"] == {"steps": 400} and "model_id" not in loaded.card_info
    mine = tmp_path / "my-vqgan"
    loaded.save_pretrained(mine)
    text = (mine / "README.md").read_text()
    assert "No training recipe was recorded" not in text and "| `steps` | 400 |" in text
    assert "| PSNR ↑ | 21.5 dB |" in text and f"hf-vq evaluate {mine} --dataset builtin" in text
    assert (mine / "samples.png").is_file() and "![Reconstructions](samples.png)" in text
    assert load_card_info(mine)["model_id"] == str(mine)  # the snippets name the new folder
    assert VQGANModel.from_pretrained(tmp_path / "run", output_loading_info=True)[0].card_info["results"] == RESULTS


def test_a_new_evaluation_is_added_beside_the_recorded_one(model, tmp_path):
    """`hf-vq evaluate` on other data adds a table and a "Reproduce with" command; the same data replaces it."""
    model.card_info = {"results": RESULTS}
    model.save_pretrained(tmp_path)
    folder_results = {
        **RESULTS,
        "dataset": "./my_images",
        "split": "train",
        "num_images": 5,
        "command": "hf-vq evaluate MODEL --dataset ./my_images --num-images 5 --image-size 32 --split train",
    }
    update_model_card(tmp_path, model=model, results=folder_results)
    text = (tmp_path / "README.md").read_text()
    assert text.count("Reproduce with:") == 2
    assert f"hf-vq evaluate {tmp_path} --dataset builtin --num-images 16 --image-size 32" in text
    assert f"hf-vq evaluate {tmp_path} --dataset path/to/my_images --num-images 5" in text  # no local path
    assert "### built-in photos (held-out) (16 images, 32×32 px)" in text
    assert "### `my_images (local)` (train, 5 images, 32×32 px)" in text
    card = ModelCard.load(tmp_path / "README.md")
    assert {r.dataset_type for r in card.data.eval_results} == {"builtin", "my_images (local)"}
    remeasured = {**RESULTS, "metrics": {**RESULTS["metrics"], "psnr": 23.0}}
    update_model_card(tmp_path, model=model, results=remeasured)
    recorded = load_card_info(tmp_path)["results"]
    assert [r["dataset"] for r in recorded] == ["builtin", "my_images (local)"]
    assert recorded[0]["metrics"]["psnr"] == 23.0


def test_card_install_line_works_without_pypi(model, tmp_path):
    model.save_pretrained(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "pip install hf-vq" not in text and "pypi.org" not in text
    assert "installed from its source repository (it is\nnot on PyPI): `pip install -e .` in a clone" in text
    assert "hf-vq push --remote-code" in text  # the transformers-only path


class MultiScaleTokenizer(VQVAEModel):
    """A stand-in for a VAR-style tokenizer: ten scales of tokens sharing one codebook."""

    model_card_name = "multi-scale stand-in"

    @property
    def token_layout(self) -> TokenLayout:
        scales = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
        levels = tuple(TokenLevel(f"scale_{s}", side=s, codebook_size=4096, codebook="scales") for s in scales)
        return TokenLayout(levels, image_multiple=16)


class SequenceTokenizer(VQVAEModel):
    """A stand-in for a TiTok-style tokenizer: 32 tokens whatever the image size."""

    model_card_name = "1-D stand-in"

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout((TokenLevel("tokens", length=32, codebook_size=4096),), image_multiple=16)


def stand_in(model_class):
    config = VQVAEConfig(
        hidden_channels=16, residual_hidden_channels=8, latent_channels=4, num_vq_embeddings=32, sample_size=256
    )
    return model_class(config)


def test_card_of_a_multi_scale_tokenizer_says_its_scales_share_one_codebook():
    text = render_model_card(stand_in(MultiScaleTokenizer), {"model_id": "org/var"}).text
    assert (
        "256×256 images become coarse to fine, 1×1, 2×2, 3×3, 4×4, 5×5, 6×6, 8×8, 10×10, 13×13 and 16×16 grids of "
        "tokens (levels `scale_1` to `scale_16`) sharing a codebook of 4,096 codes (12 bits per token), and back."
    ) in text
    assert "| Token grid (scale_13) | 13² tokens at any image size |" in text
    (snippet,) = python_blocks(text)
    assert "H and W divisible by 16." in snippet and "(1, 13, 13) in [0, 4096), (1, 16, 16) in [0, 4096)" in snippet


def test_card_of_a_1d_tokenizer_says_its_sequence_length():
    text = render_model_card(stand_in(SequenceTokenizer), {"model_id": "org/titok"}).text
    assert "256×256 images become sequences of 32 tokens from a codebook of 4,096 codes (12 bits per token)" in text
    assert "| Token sequence | 32 tokens at any image size |" in text
    (snippet,) = python_blocks(text)
    assert "H and W divisible by 16." in snippet and "# (1, 32) token ids in [0, 4096)" in snippet


def test_from_pretrained_without_a_path_builds_from_config_and_state_dict(model):
    """transformers' `from_pretrained(None, config=..., state_dict=...)` (used by its own common tests): no folder,
    so no card inputs to read; it failed in hf-vq's override, which read them from the `None` path."""
    loaded = VQGANModel.from_pretrained(None, config=model.config, state_dict=model.state_dict())
    assert loaded.card_info is None
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
