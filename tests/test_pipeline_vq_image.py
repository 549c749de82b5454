"""`VQImagePipeline`: an hf-vq tokenizer and a transformer prior as one diffusers pipeline. Output types, class names,
the tokenizer check, and a save / load round trip as one folder."""

import doctest
import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY_TRANSFORMER, tiny_vqgan_config

pytest.importorskip("diffusers")

from hf_vq import VQGANModel
from hf_vq.modeling.configuration_prior import VQPriorConfig
from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
from hf_vq.pipelines import VQImagePipeline, pipeline_vq_image

CLASSES = {0: "astronaut", 1: "coffee", 2: "camera"}


def tiny_pipeline(**prior_fields) -> VQImagePipeline:
    torch.manual_seed(0)
    vqvae = VQGANModel(tiny_vqgan_config(sample_size=8)).eval()
    fields = {**dict(num_classes=3, id2label=CLASSES), **TINY_TRANSFORMER, "num_hidden_layers": 1, **prior_fields}
    prior = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(vqvae, **fields)).eval()
    pipe = VQImagePipeline(vqvae=vqvae, transformer=prior)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def run(pipe, **kwargs):
    kwargs = {**dict(class_labels=[0, 2], guidance_scale=2.0, generator=torch.Generator().manual_seed(0)), **kwargs}
    return pipe(**kwargs).images


def test_output_types(pipe):
    ids = run(pipe, output_type="latent")
    expected = pipe.transformer.generate_indices(
        class_labels=[0, 2], guidance_scale=2.0, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(ids, expected) and ids.shape == (2, 4, 4)

    pixels = run(pipe, output_type="pt")
    low, high = pipe.vqvae.config.pixel_range
    torch.testing.assert_close(pixels, ((pipe.vqvae.decode_indices(ids) - low) / (high - low)).clamp(0, 1))
    assert pixels.shape == (2, 3, 8, 8)

    array = run(pipe, output_type="np")
    assert isinstance(array, np.ndarray) and array.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(array, pixels.permute(0, 2, 3, 1).numpy())

    images = run(pipe)  # "pil"
    assert len(images) == 2 and all(isinstance(image, Image.Image) and image.size == (8, 8) for image in images)
    assert pipe(class_labels=1, num_images_per_prompt=3, output_type="latent").images.shape == (3, 4, 4)
    (only,) = pipe(class_labels=[1], output_type="latent", return_dict=False)
    assert only.shape == (1, 4, 4)


def test_class_names_and_ids_give_the_same_images(pipe):
    by_name = run(pipe, class_labels=["astronaut", "camera"], output_type="latent")
    assert torch.equal(by_name, run(pipe, class_labels=["astronaut", 2], output_type="latent"))
    assert torch.equal(by_name, run(pipe, class_labels=torch.tensor([0, 2]), output_type="latent"))
    assert pipe.get_label_ids("coffee") == [1]
    with pytest.raises(ValueError, match="Unknown class name 'dog'"):
        pipe(class_labels=["dog"])


def test_bad_input(pipe):
    with pytest.raises(ValueError, match="output_type"):
        pipe(class_labels=[0], output_type="jpeg")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        pipe(class_labels=[3])
    with pytest.raises(ValueError, match="num_images"):
        pipe(class_labels=[0], num_images_per_prompt=0)
    unnamed = tiny_pipeline(id2label=None)
    with pytest.raises(ValueError, match="no class names"):
        unnamed(class_labels=["astronaut"])
    # Sampling options are the prior family's: another family's option is named with the ones this prior takes.
    message = "'num_inference_steps' is not a sampling option of VQPriorForCausalLM.*temperature, top_k, top_p"
    with pytest.raises(ValueError, match=message):
        pipe(class_labels=[0], num_inference_steps=8)


def test_sampling_options_pass_through_to_the_prior(pipe):
    options = dict(temperature=0.7, top_k=3, top_p=0.9)
    ids = run(pipe, output_type="latent", **options)
    expected = pipe.transformer.generate_indices(
        class_labels=[0, 2], guidance_scale=2.0, generator=torch.Generator().manual_seed(0), **options
    )
    assert torch.equal(ids, expected)
    greedy = run(pipe, output_type="latent", temperature=0)
    expected = pipe.transformer.generate_indices(class_labels=[0, 2], guidance_scale=2.0, temperature=0)
    assert torch.equal(greedy, expected)


def test_unconditional_prior():
    pipe = tiny_pipeline(num_classes=0, id2label=None)
    assert pipe(num_images_per_prompt=2, output_type="pt").images.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="unconditional prior"):
        pipe(class_labels=[0])


def test_tokenizer_mismatch_is_refused(pipe):
    other = VQGANModel(tiny_vqgan_config(sample_size=8, latent_channels=8)).eval()
    mismatched = VQImagePipeline(vqvae=other, transformer=pipe.transformer)
    with pytest.raises(ValueError, match="config hash"):
        mismatched(class_labels=[0])


def test_save_and_load_as_one_folder(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "VQImagePipeline"
    assert index["vqvae"][1] == "VQGANModel" and index["transformer"][1] == "VQPriorForCausalLM"
    assert (tmp_path / "vqvae" / "config.json").is_file() and (tmp_path / "transformer" / "config.json").is_file()
    loaded = VQImagePipeline.from_pretrained(tmp_path)
    assert type(loaded.vqvae) is VQGANModel and type(loaded.transformer) is VQPriorForCausalLM
    assert loaded.transformer.config.id2label == CLASSES
    np.testing.assert_array_equal(run(loaded, output_type="np"), run(pipe, output_type="np"))


def test_docstring_example_runs():
    assert doctest.testmod(pipeline_vq_image, raise_on_error=True).attempted > 0
