"""Image generation with an hf-vq tokenizer and a prior over its ids, as a diffusers pipeline.

The prior, of any family, samples token ids through the prior interface ([`VQPriorMixin.generate_indices`]:
the autoregressive `VQPriorForCausalLM`, or any registered family) and the tokenizer decodes them
(`decode_indices`). Given an `image` and a `mask_image`, a prior that can fill in tokens (the masked
`VQPriorForMaskedLM`, through its `inpaint_indices`) repaints the masked region of the encoded image instead.
Built on `DiffusionPipeline` for its saving, loading, device and offload machinery, not on diffusers' aMUSEd
or VQ-Diffusion pipelines (deprecated in diffusers 0.42).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from .editing import ImageInput, edit_inputs

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class VQImagePipeline(DiffusionPipeline):
    r"""
    Class-conditional (or unconditional) image generation: a transformer prior samples token ids, the VQ tokenizer
    decodes them to pixels.

    Components:
        vqvae ([`VQPreTrainedModel`]):
            Any hf-vq tokenizer (`VQGANModel`, `VQVAEModel`, ...): its `decode_indices` turns ids into images.
        transformer ([`VQPriorMixin`]):
            The prior over that tokenizer's ids, of any family (`VQPriorForCausalLM`, ...); it checks at every call
            that `vqvae` is the tokenizer it was trained on (token layout and config hash).

    The pipeline saves as one folder (`save_pretrained`: `model_index.json`, `vqvae/`, `transformer/`) and loads
    with `VQImagePipeline.from_pretrained(folder)`. `DiffusionPipeline.from_pretrained` does not know this class:
    pass `custom_pipeline` and `trust_remote_code=True` to it, or use this class's own `from_pretrained`.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq import VQGANConfig, VQGANModel
    >>> from hf_vq.modeling.configuration_prior import VQPriorConfig
    >>> from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
    >>> from hf_vq.pipelines import VQImagePipeline
    >>> vqvae = VQGANModel(VQGANConfig(block_out_channels=[8, 16], layers_per_block=1, latent_channels=4,
    ...                                num_vq_embeddings=16, norm_num_groups=4, sample_size=16)).eval()
    >>> prior = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(
    ...     vqvae, num_classes=2, id2label={0: "cat", 1: "dog"}, hidden_size=32, intermediate_size=64,
    ...     num_hidden_layers=1, num_attention_heads=4)).eval()
    >>> pipe = VQImagePipeline(vqvae=vqvae, transformer=prior)
    >>> out = pipe(class_labels=["cat", 1], guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    >>> len(out.images), out.images[0].size
    (2, (16, 16))

    ```
    """

    model_cpu_offload_seq = "transformer->vqvae"

    def __init__(self, vqvae, transformer):
        super().__init__()
        self.register_modules(vqvae=vqvae, transformer=transformer)

    def get_label_ids(self, class_labels: int | str | Sequence[int | str] | torch.Tensor) -> list[int]:
        """Class labels (ids, or names from the prior's `config.id2label`) -> class ids."""
        if isinstance(class_labels, torch.Tensor):
            return class_labels.reshape(-1).tolist()
        labels = [class_labels] if isinstance(class_labels, (int, str)) else list(class_labels)
        config = self.transformer.config
        names = {str(name): int(i) for i, name in (config.id2label or {}).items()}
        ids = []
        for label in labels:
            if not isinstance(label, str):
                ids.append(label)
                continue
            if not config.has_class_names:
                raise ValueError(
                    f"Class name {label!r} given, but the prior's config has no class names (`id2label`). Pass class "
                    f"ids in [0, {config.num_classes}), or save the prior with `id2label`."
                )
            if label not in names:
                known = sorted(names)
                shown = ", ".join(map(repr, known[:10])) + (", ..." if len(known) > 10 else "")
                raise ValueError(f"Unknown class name {label!r}; the prior knows {len(known)} classes: {shown}.")
            ids.append(names[label])
        return ids

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | str | Sequence[int | str] | torch.Tensor | None = None,
        num_images_per_prompt: int = 1,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        image: ImageInput | None = None,
        mask_image: ImageInput | None = None,
        output_size: int | None = None,
        **sampling_options,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Generates images, or edits `image` where `mask_image` is white.

        Args:
            class_labels (`int`, `str`, `list` or `torch.LongTensor`, *optional*):
                Classes to generate, as ids in `[0, num_classes)` or names from the prior's `id2label`. `None` for an
                unconditional prior (or null-class samples of a conditional one).
            num_images_per_prompt (`int`, *optional*, defaults to 1):
                Images per class label (in total when `class_labels` is `None`).
            guidance_scale (`float`, *optional*, defaults to 1.0):
                Classifier-free guidance scale; 1.0 runs no unconditional branch.
            generator (`torch.Generator`, *optional*):
                On the prior's device, for reproducible images.
            output_type (`str`, *optional*, defaults to `"pil"`):
                `"pil"` (list of `PIL.Image`), `"np"` (`(B, H, W, C)` float array in [0, 1]), `"pt"` (`(B, C, H, W)`
                tensor in [0, 1]) or `"latent"` (the sampled token ids, in the tokenizer's layout).
            return_dict (`bool`, *optional*, defaults to `True`):
                Return an [`ImagePipelineOutput`] instead of a 1-tuple.
            image (`PIL.Image`, list of them, `np.ndarray` or `torch.Tensor`, *optional*):
                Image(s) to edit (arrays and tensors in [0, 1]), at the prior's image size, or smaller to outpaint
                (centred on the canvas, everything around it regenerated). Needs a prior that can edit (a masked
                prior); `num_images_per_prompt` edits per image, `class_labels` one class or one per image.
            mask_image (same types as `image`, *optional*):
                White where to regenerate, black where to keep. The tokens whose cells touch a white pixel are
                regenerated; the others keep their ids bit-identical (`output_type="latent"` returns them).
            output_size (`int`, *optional*):
                Side in pixels of the returned images, bicubic-resized from the prior's `image_size` (e.g. 256 for a
                384-px LlamaGen model, as LlamaGen evaluates them). Default: the prior's own size.
            sampling_options:
                The prior family's own sampling options, passed to its `generate_indices`;
                `pipe.transformer.sampling_options()` lists them with their defaults. An autoregressive prior takes
                `temperature` (0 for greedy decoding), `top_k` (sample among the `top_k` most likely ids) and `top_p`
                (nucleus sampling threshold); a masked one, e.g., `num_inference_steps`.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}; got {output_type!r}.")
        if output_size is not None and (
            isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1
        ):
            raise ValueError(f"`output_size` must be a positive int (pixels) or None; got {output_size!r}.")
        self.transformer.check_sampling_options(sampling_options)
        labels = None if class_labels is None else self.get_label_ids(class_labels)
        if image is not None or mask_image is not None:
            indices = self.edit(
                image, mask_image, labels, num_images_per_prompt, guidance_scale, generator, sampling_options
            )
        else:
            indices = self.transformer.generate_indices(
                class_labels=labels,
                num_images=num_images_per_prompt,
                guidance_scale=guidance_scale,
                generator=generator,
                tokenizer=self.vqvae,
                **sampling_options,
            )
        if output_type == "latent":
            images = indices
        else:
            device = self.vqvae.device
            indices = indices.to(device) if isinstance(indices, torch.Tensor) else tuple(i.to(device) for i in indices)
            low, high = self.vqvae.config.pixel_range
            images = ((self.vqvae.decode_indices(indices).float() - low) / (high - low)).clamp(0, 1)
            if output_size is not None and tuple(images.shape[-2:]) != (output_size, output_size):
                images = F.interpolate(images, size=(output_size, output_size), mode="bicubic").clamp(0, 1)
            if output_type != "pt":
                images = images.permute(0, 2, 3, 1).cpu().numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images.astype(np.float32))
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def edit(self, image, mask_image, labels, num_images: int, guidance_scale, generator, sampling_options):
        """The edited token ids: `image` encoded, the tokens under `mask_image` regenerated by the prior."""
        prior = self.transformer
        if not hasattr(prior, "inpaint_indices"):
            raise ValueError(
                f"`image` / `mask_image` were given, but {type(prior).__name__} ({prior.model_card_name}) cannot "
                "edit images: it generates tokens in a fixed order and cannot fill in a region. Editing needs a "
                "masked prior (`hf-vq train-prior --prior-type masked`, VQPriorForMaskedLM) over the same tokenizer; "
                "or leave out `image` and `mask_image` to sample new images."
            )
        if image is None:
            raise ValueError("`mask_image` was given without `image`: pass the image to edit as well.")
        prior.check_tokenizer(self.vqvae)
        pixels, mask = edit_inputs(image, mask_image, prior.config.image_size)
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"`num_images_per_prompt` must be an integer >= 1; got {num_images!r}.")
        if labels is not None and len(labels) not in (1, len(pixels)):
            raise ValueError(
                f"`class_labels` must hold one class, or one per image ({len(pixels)}); got {len(labels)}."
            )
        pixels, mask = pixels.repeat_interleave(num_images, 0), mask.repeat_interleave(num_images, 0)
        if labels is not None and len(labels) > 1:
            labels = torch.as_tensor(labels).repeat_interleave(num_images).tolist()
        low, high = self.vqvae.config.pixel_range
        dtype = next(self.vqvae.parameters()).dtype
        indices = self.vqvae.encode_to_indices((pixels * (high - low) + low).to(self.vqvae.device, dtype))
        return prior.inpaint_indices(
            indices,
            prior.tokens_under_mask(mask),
            class_labels=labels,
            guidance_scale=guidance_scale,
            generator=generator,
            tokenizer=self.vqvae,
            **sampling_options,
        )


__all__ = ["OUTPUT_TYPES", "VQImagePipeline"]
