"""Editing with the masked prior: the pixel mask dilated to every level's token grid, only the masked ids
regenerated (the others bit-identical), inpainting and outpainting through
`VQImagePipeline(image=..., mask_image=...)`, and the autoregressive prior's error naming the prior type that can
edit."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_vq import VQGANModel
from hf_vq.modeling import MaskedPriorConfig, VQPriorConfig, VQPriorForCausalLM, VQPriorForMaskedLM

from helpers import TINY_TOKENIZER, TINY_TRANSFORMER, tiny_vqgan_config

pytest.importorskip("diffusers")

TWO_LEVELS = [  # a 2x2 coarse grid, and a 4x4 fine grid with two residual stages per position, at 8 px
    {"name": "top", "downsampling_factor": 4, "codebook_size": 8},
    {"name": "bottom", "downsampling_factor": 2, "codebook_size": 16, "depth": 2},
]


@pytest.fixture(scope="module")
def pipe():
    """A tiny 16 px tokenizer (4x4 grid of 16 codes) and an untrained masked prior over it, two classes."""
    from hf_vq.pipelines import VQImagePipeline

    torch.manual_seed(0)
    vqvae = VQGANModel(tiny_vqgan_config(**TINY_TOKENIZER)).eval()
    prior = VQPriorForMaskedLM(
        MaskedPriorConfig.from_tokenizer(vqvae, num_classes=2, id2label={0: "left", 1: "right"}, **TINY_TRANSFORMER)
    ).eval()
    pipeline = VQImagePipeline(vqvae=vqvae, transformer=prior)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_the_pixel_mask_is_dilated_to_every_level_and_only_masked_ids_change():
    torch.manual_seed(0)
    prior = VQPriorForMaskedLM(MaskedPriorConfig(token_levels=TWO_LEVELS, image_size=8, **TINY_TRANSFORMER)).eval()
    pixels = torch.zeros(2, 8, 8, dtype=torch.bool)
    pixels[0, 3, 5] = True  # one pixel: top cell (0, 1), bottom cell (1, 2)
    pixels[1, 6:, :] = True  # the bottom two rows: top cells (1, 0), (1, 1); bottom row 3
    tokens = prior.tokens_under_mask(pixels)
    assert tokens.shape == (2, 4 + 32)
    assert tokens[0, :4].tolist() == [False, True, False, False] and tokens[1, :4].tolist() == [
        False,
        False,
        True,
        True,
    ]
    bottom = tokens[:, 4:].view(2, 4, 4, 2)
    assert bottom[0].nonzero().tolist() == [[1, 2, 0], [1, 2, 1]]  # both stages of the cell
    assert bottom[1, 3].all() and not bottom[1, :3].any()

    top = torch.randint(0, 8, (2, 2, 2))
    fine = torch.randint(0, 16, (2, 4, 4, 2))
    calls = []
    prior.register_forward_hook(lambda module, args, kwargs, out: calls.append(1), with_kwargs=True)
    edited = prior.inpaint_indices((top, fine), tokens, num_inference_steps=3, generator=torch.Generator())
    flat, before = prior.config.token_layout.flatten(edited), prior.config.token_layout.flatten((top, fine))
    assert torch.equal(flat[~tokens], before[~tokens])  # bit-identical outside the mask
    assert (flat[tokens] != before[tokens]).any() and len(calls) == 3  # regenerated inside, in 3 steps
    # Valid ids of each position's level and stage only.
    assert edited[0].max() < 8 and edited[1].max() < 16 and min(e.min() for e in edited) >= 0


def test_pipeline_inpaints_and_outpaints_keeping_the_ids_outside_the_mask(pipe):
    image = torch.rand(2, 3, 16, 16)
    mask = torch.zeros(16, 16)
    mask[4:8, 4:10] = 1.0  # white: regenerate; covers token cells (1, 1) and (1, 2) of the 4x4 grid
    generator = torch.Generator().manual_seed(0)
    ids = pipe(image=image, mask_image=mask, class_labels=["left", 1], output_type="latent", generator=generator)
    original = pipe.vqvae.encode_to_indices(image * 2 - 1)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1, 1:3] = True
    assert (
        torch.equal(ids.images[:, ~inside], original[:, ~inside])
        and (ids.images[:, inside] != original[:, inside]).any()
    )
    generator = torch.Generator().manual_seed(0)
    again = pipe(image=image, mask_image=mask, class_labels=[0, 1], output_type="latent", generator=generator)
    assert torch.equal(ids.images, again.images)  # seeds reproduce

    # Outpainting: an 8x8 image centred on the 16x16 canvas keeps its cells' ids, the ring around is regenerated.
    small = image[:1, :, 4:12, 4:12]
    out = pipe(image=small, class_labels=[1], num_images_per_prompt=2, output_type="latent").images
    centre = pipe.vqvae.encode_to_indices(torch.nn.functional.pad(small, (4, 4, 4, 4), value=0.5) * 2 - 1)
    assert out.shape == (2, 4, 4) and torch.equal(out[:, 1:3, 1:3], centre.expand(2, -1, -1)[:, 1:3, 1:3])
    pictures = pipe(image=small, class_labels=[1], output_type="pt").images
    assert pictures.shape == (1, 3, 16, 16)

    with pytest.raises(ValueError, match="needs `mask_image`"):
        pipe(image=image, class_labels=[0, 1])
    with pytest.raises(ValueError, match="larger than the prior's 16x16 canvas"):
        pipe(image=torch.rand(1, 3, 32, 32), class_labels=[0])


def test_an_autoregressive_prior_given_a_mask_names_the_prior_type_that_can_edit(pipe):
    from hf_vq.pipelines import VQImagePipeline

    causal = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(pipe.vqvae, num_classes=2, **TINY_TRANSFORMER)).eval()
    with pytest.raises(ValueError, match=r"VQPriorForCausalLM .* cannot edit images.*--prior-type masked"):
        VQImagePipeline(vqvae=pipe.vqvae, transformer=causal)(
            image=torch.rand(1, 3, 16, 16), mask_image=torch.ones(16, 16)
        )


def test_the_readme_masked_prior_example_runs(tmp_path, monkeypatch):
    """The Python block of the README's "Masked prior" section, on a tiny stand-in for the pipeline it loads (a 32 px
    tokenizer with an 8x8 grid, Fashion-MNIST's class names)."""
    from hf_vq.data.fashion_mnist import CLASS_NAMES
    from hf_vq.pipelines import VQImagePipeline

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Masked prior: fast sampling and editing\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    folder = re.search(r'from_pretrained\("([^"]+)"\)', code).group(1)
    torch.manual_seed(0)
    vqvae = VQGANModel(tiny_vqgan_config(**{**TINY_TOKENIZER, "sample_size": 32})).eval()
    names = dict(enumerate(CLASS_NAMES))
    prior = VQPriorForMaskedLM(
        MaskedPriorConfig.from_tokenizer(vqvae, num_classes=10, id2label=names, **TINY_TRANSFORMER)
    )
    VQImagePipeline(vqvae=vqvae, transformer=prior).save_pretrained(tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["images"]) == 2 and len(namespace["edits"]) == 2 and namespace["wider"][0].size == (32, 32)
    pixels = torch.from_numpy(np.asarray(namespace["images"][0], dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
    original = namespace["pipe"].vqvae.encode_to_indices(pixels[None])
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[2:6, 2:6] = False  # the mask's 16x16 square, at f = 4
    assert torch.equal(namespace["ids"][:, outside], original[:, outside])
