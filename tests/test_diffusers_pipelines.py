"""Our VQ-GAN as the VQ component of diffusers pipelines: 2 steps with tiny random components, once with our model
and once with its `to_diffusers()` export, giving the same images; save/load round trip; accelerate hooks."""

import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from accelerate import cpu_offload_with_hook
from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module
from diffusers import (
    AmusedImg2ImgPipeline,
    AmusedPipeline,
    AmusedScheduler,
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    KandinskyV22Pipeline,
    LDMPipeline,
    LDMSuperResolutionPipeline,
    LDMTextToImagePipeline,
    Transformer2DModel,
    UNet2DConditionModel,
    UNet2DModel,
    UVit2DModel,
    VQDiffusionPipeline,
    VQDiffusionScheduler,
)
from diffusers.pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion import (
    LearnedClassifierFreeSamplingEmbeddings,
)
from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel
from transformers import BertTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from hf_vq import VQGANModel

from helpers import tiny_vqgan_config

IMAGE_TOLERANCE = 1e-5  # fp32; the two models differ only by rounding


def _vq(**fields):
    """The tiny VQ-GAN at 16 px with 3-channel latents (what the UNets here take) and 12 codes."""
    torch.manual_seed(0)
    config = tiny_vqgan_config(**{"latent_channels": 3, "num_vq_embeddings": 12, "sample_size": 16, **fields})
    return VQGANModel(config).eval()


def _run_both(make_pipeline, model, inputs):
    """Images from the pipeline with our model and with the exported diffusers.VQModel, same seed."""
    images = []
    for vq in (model, model.to_diffusers()):
        pipe = make_pipeline(vq)
        pipe.set_progress_bar_config(disable=True)
        images.append(pipe(**inputs(), output_type="np").images)
    ours, theirs = images
    assert ours.shape == theirs.shape and np.isfinite(ours).all()
    assert np.abs(ours - theirs).max() <= IMAGE_TOLERANCE
    return ours


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    # A tiny offline CLIP BPE tokenizer (the text content does not matter to these tests).
    folder = tmp_path_factory.mktemp("clip_tokenizer")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "cat</w>": 3, "c": 4, "a": 5, "t</w>": 6}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    return CLIPTokenizer(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"), model_max_length=8
    )


def _ldm_unet(in_channels=3, out_channels=3):
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=out_channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
    ).eval()


def _generator():
    return torch.Generator().manual_seed(0)


def test_ldm_pipeline_honours_scaling_factor():
    model, unet = _vq(scaling_factor=0.5), _ldm_unet()
    images = _run_both(
        lambda vq: LDMPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler()),
        model,
        lambda: dict(batch_size=1, generator=_generator(), num_inference_steps=2),
    )
    assert images.shape == (1, 16, 16, 3)
    # The pipeline divides its latents by our config's scaling_factor before `decode` quantizes them.
    seen = {}
    for factor in (0.5, 1.0):
        vq = _vq(scaling_factor=factor)
        vq.quantize.register_forward_pre_hook(
            lambda module, args, factor=factor: seen.__setitem__(factor, args[0].clone())
        )
        pipe = LDMPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler())
        pipe.set_progress_bar_config(disable=True)
        pipe(batch_size=1, generator=_generator(), num_inference_steps=2, output_type="np")
    assert torch.allclose(seen[0.5], 2 * seen[1.0])


def test_ldm_super_resolution_pipeline():
    model, unet = _vq(), _ldm_unet(in_channels=6)
    low_res = torch.rand(1, 3, 8, 8, generator=_generator()) * 2 - 1
    images = _run_both(
        lambda vq: LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler()),
        model,
        lambda: dict(image=low_res, generator=_generator(), num_inference_steps=2),
    )
    assert images.shape == (1, 16, 16, 3)


def test_ldm_text_to_image_pipeline(tmp_path):
    # LDMBert with a tiny offline WordPiece vocabulary (the pipeline pads every prompt to 77 tokens).
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "photo"]))
    tokenizer = BertTokenizer(str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    bert = LDMBertModel(
        LDMBertConfig(
            vocab_size=8,
            max_position_embeddings=77,
            encoder_layers=1,
            encoder_ffn_dim=16,
            encoder_attention_heads=2,
            head_dim=8,
            d_model=16,
        )
    ).eval()
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=4,
        attention_head_dim=8,
    ).eval()
    images = _run_both(
        lambda vq: LDMTextToImagePipeline(
            vqvae=vq, bert=bert, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler()
        ),
        _vq(scaling_factor=0.5),
        # diffusers 0.42 sizes the latents as height // 8 whatever the VQ model's factor: 64 -> 8x8 latents, which
        # our factor-2 test model decodes to 16x16
        lambda: dict(
            prompt="a cat photo",
            generator=_generator(),
            num_inference_steps=2,
            guidance_scale=2.0,
            height=64,
            width=64,
        ),
    )
    assert images.shape == (1, 16, 16, 3)


def test_vq_diffusion_pipeline_uses_codebook_lookup_and_force_not_quantize(clip_tokenizer):
    num_embed, side = 12, 8
    model = _vq(num_vq_embeddings=num_embed)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=1,
            vocab_size=16,
            max_position_embeddings=8,
        )
    ).eval()
    transformer = Transformer2DModel(
        attention_bias=True,
        cross_attention_dim=32,
        attention_head_dim=side * side,
        num_attention_heads=1,
        num_vector_embeds=num_embed,
        num_embeds_ada_norm=100,
        norm_num_groups=32,
        sample_size=side,
        activation_fn="geglu-approximate",
    ).eval()

    def make(vq):
        return VQDiffusionPipeline(
            vqvae=vq,
            text_encoder=text_encoder,
            tokenizer=clip_tokenizer,
            transformer=transformer,
            scheduler=VQDiffusionScheduler(num_embed),
            learned_classifier_free_sampling_embeddings=LearnedClassifierFreeSamplingEmbeddings(learnable=False),
        )

    images = _run_both(make, model, lambda: dict(prompt="a cat", generator=_generator(), num_inference_steps=2))
    assert images.shape == (1, 2 * side, 2 * side, 3)


def _amused_parts():
    torch.manual_seed(0)
    transformer = UVit2DModel(
        hidden_size=8,
        use_bias=False,
        hidden_dropout=0.0,
        cond_embed_dim=8,
        micro_cond_encode_dim=2,
        micro_cond_embed_dim=10,
        encoder_hidden_size=8,
        vocab_size=32,
        codebook_size=32,
        in_channels=8,
        block_out_channels=8,
        num_res_blocks=1,
        downsample=True,
        upsample=True,
        block_num_heads=1,
        num_hidden_layers=1,
        num_attention_heads=1,
        attention_dropout=0.0,
        intermediate_size=8,
        layer_norm_eps=1e-06,
        ln_elementwise_affine=True,
    ).eval()
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=8,
            intermediate_size=8,
            num_attention_heads=1,
            num_hidden_layers=1,
            vocab_size=16,
            projection_dim=8,
            max_position_embeddings=8,
        )
    ).eval()
    # aMUSEd's VQ: ids decoded through the codebook, images in [0, 1], no mid-block attention.
    model = _vq(
        block_out_channels=[8],
        down_block_types=["DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D"],
        latent_channels=8,
        num_vq_embeddings=32,
        norm_num_groups=8,
        sample_size=8,
        mid_block_add_attention=False,
        lookup_from_codebook=True,
        force_upcast=True,
        pixel_range=(0.0, 1.0),
    )
    return model, transformer, text_encoder


def test_amused_text_to_image_and_img2img(clip_tokenizer):
    model, transformer, text_encoder = _amused_parts()
    parts = dict(transformer=transformer, text_encoder=text_encoder, tokenizer=clip_tokenizer)

    def common():
        return dict(prompt="a cat", generator=_generator(), num_inference_steps=2, height=4, width=4)

    _run_both(lambda vq: AmusedPipeline(vqvae=vq, scheduler=AmusedScheduler(mask_token_id=31), **parts), model, common)
    image = torch.rand(1, 3, 4, 4, generator=_generator())
    # img2img reads token ids with `vqvae.quantize(latents)[2][2]`.
    _run_both(
        lambda vq: AmusedImg2ImgPipeline(vqvae=vq, scheduler=AmusedScheduler(mask_token_id=31), **parts),
        model,
        lambda: dict(prompt="a cat", generator=_generator(), num_inference_steps=2, image=image, strength=0.5),
    )


def test_amused_force_upcast_decodes_half_model_in_fp32(clip_tokenizer):
    model, transformer, text_encoder = _amused_parts()
    model.half()
    pipe = AmusedPipeline(
        vqvae=model,
        scheduler=AmusedScheduler(mask_token_id=31),
        transformer=transformer,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        prompt="a cat", generator=_generator(), num_inference_steps=2, height=4, width=4, output_type="np"
    ).images
    assert np.isfinite(images).all()
    assert model.dtype == torch.float16  # the pipeline upcast for decoding (force_upcast) and cast back


def test_kandinsky_22_movq_with_dict_output_access():
    # MoVQ: spatial norms in the decoder (diffusers' SpatialNorm always has 32 groups).
    model = _vq(block_out_channels=[32, 64], latent_channels=4, norm_num_groups=32, norm_type="spatial")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,
        addition_embed_type="image",
        block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        layers_per_block=1,
        encoder_hid_dim=32,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    ).eval()
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        variance_type="learned_range",
        prediction_type="epsilon",
        thresholding=False,
    )
    embeds = torch.randn(1, 32, generator=_generator())
    images = _run_both(
        lambda vq: KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=vq),
        model,
        lambda: dict(
            image_embeds=embeds,
            negative_image_embeds=-embeds,
            generator=_generator(),
            num_inference_steps=2,
            height=32,
            width=32,
            guidance_scale=4.0,
        ),
    )
    assert images.shape == (1, 32, 32, 3)


def test_pipeline_save_and_load_round_trip(tmp_path):
    model, unet = _vq(scaling_factor=0.5), _ldm_unet()
    pipe = LDMPipeline(vqvae=model, unet=unet, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=1, generator=_generator(), num_inference_steps=2, output_type="np").images
    pipe.save_pretrained(tmp_path)
    library, class_name = json.loads((tmp_path / "model_index.json").read_text())["vqvae"]
    assert library.split(".")[0] == "hf_vq" and class_name == "VQGANModel"
    loaded = DiffusionPipeline.from_pretrained(tmp_path)  # resolves "hf_vq" by importing it
    assert isinstance(loaded.vqvae, VQGANModel) and loaded.vqvae.config.scaling_factor == 0.5
    loaded.set_progress_bar_config(disable=True)
    images = loaded(batch_size=1, generator=_generator(), num_inference_steps=2, output_type="np").images
    assert np.array_equal(images, expected)


def test_reloading_a_pipeline_does_not_warn_that_our_model_is_not_a_vqmodel(tmp_path):
    import logging

    from hf_vq.integrations.diffusers import _ComponentTypeWarningFilter

    pipe = LDMPipeline(vqvae=_vq(), unet=_ldm_unet(), scheduler=DDIMScheduler())
    pipe.save_pretrained(tmp_path)
    logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    ours = [f for f in logger.filters if isinstance(f, _ComponentTypeWarningFilter)]
    assert len(ours) == 1  # installed once, by `import hf_vq`
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        DiffusionPipeline.from_pretrained(tmp_path)
        assert not [r.getMessage() for r in records if "Expected types" in r.getMessage()]
        logger.removeFilter(ours[0])  # without the filter diffusers does warn: the check above can fail
        DiffusionPipeline.from_pretrained(tmp_path)
        assert [r for r in records if "got <class 'hf_vq.modeling.modeling_vqgan.VQGANModel'>" in r.getMessage()]
        logger.addFilter(ours[0])
        records.clear()  # other classes still get the warning
        logger.warning("Expected types for vqvae: (<class 'diffusers.VQModel'>,), got <class 'torch.nn.Linear'>.")
        assert len(records) == 1
    finally:
        logger.removeHandler(handler)
        if ours[0] not in logger.filters:
            logger.addFilter(ours[0])


class _CountingHook(ModelHook):
    def __init__(self):
        self.calls = 0

    def pre_forward(self, module, *args, **kwargs):
        self.calls += 1
        return args, kwargs


def test_accelerate_hooks_wrap_our_model():
    model, unet = _vq(), _ldm_unet()
    pipe = LDMPipeline(vqvae=model, unet=unet, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=1, generator=_generator(), num_inference_steps=2, output_type="np").images
    # Pipelines call `vqvae.decode` directly: it must trigger the hook as `forward` does (model CPU offload).
    hook = _CountingHook()
    add_hook_to_module(model, hook)
    images = pipe(batch_size=1, generator=_generator(), num_inference_steps=2, output_type="np").images
    assert hook.calls == 1 and np.array_equal(images, expected)
    remove_hook_from_module(model)
    # The hook `enable_model_cpu_offload` installs (execution device: CPU here, the accelerator on a GPU box).
    _, offload_hook = cpu_offload_with_hook(model, execution_device="cpu")
    images = pipe(batch_size=1, generator=_generator(), num_inference_steps=2, output_type="np").images
    assert np.array_equal(images, expected)
    offload_hook.offload()
    remove_hook_from_module(model)
