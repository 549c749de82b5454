"""What the generator tabs compute, without Gradio: images from a `VQImagePipeline` for a class picked by name, with
the prior family's own sampling options, through `hf_vq.pipelines.sample_images` (what `hf-vq generate` calls), so
that a seed gives the demo the images the pipeline and the command give; and, for a prior that can edit (a masked
prior), a painted region of an image regenerated (`VQImagePipeline(image=..., mask_image=...)`).

The sampling controls are read from the prior (`transformer.sampling_options()`): a family shows the controls of the
options it takes, so the autoregressive prior shows temperature, top-k and top-p, and a masked prior its decoding
steps, with no change here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image

from ..data import center_crop, to_uint8
from ..pipelines.sampling import sample_images

UNCONDITIONAL = "(no class: unconditional)"


@dataclass(frozen=True)
class SamplingControl:
    """A slider for one sampling option of a prior family.

    Args:
        name (`str`): the keyword of the family's `generate_indices`.
        label (`str`): what the slider is called.
        minimum, maximum, step (`float`): the slider's range.
        off (`float`, *optional*): the slider value that means "not set" (`None` to the prior): top-k 0, top-p 1.
        info (`str`): one line under the slider.
    """

    name: str
    label: str
    minimum: float
    maximum: float
    step: float
    off: float | None = None
    info: str = ""

    def value(self, given: float) -> Any:
        """The option's value for the prior from the slider's `given` value."""
        if self.off is not None and given == self.off:
            return None
        return int(given) if float(self.step).is_integer() else float(given)

    def default(self, family_default: Any) -> float:
        """The slider's starting value for the family's default (`None` -> the "off" value)."""
        return self.off if family_default is None else family_default


# The options the demo has a control for; a family's other options keep their defaults.
CONTROLS = (
    SamplingControl("temperature", "Temperature", 0.0, 2.0, 0.05, info="0: greedy (the most likely id every step)"),
    SamplingControl("top_k", "Top-k", 0, 1024, 1, off=0, info="sample among the k most likely ids (0: all)"),
    SamplingControl("top_p", "Top-p", 0.05, 1.0, 0.05, off=1.0, info="nucleus sampling threshold (1: off)"),
    SamplingControl("num_inference_steps", "Decoding steps", 1, 64, 1, info="parallel decoding steps"),
)


class GeneratorDemo:
    """The computations behind the generator tabs for one `VQImagePipeline`.

    Args:
        pipe (`VQImagePipeline`): the tokenizer and prior, on their device, in eval mode.
    """

    def __init__(self, pipe):
        self.pipe = pipe
        self.config = pipe.transformer.config
        family = pipe.transformer.sampling_options()
        # Top-k counts image ids (at most the image vocabulary); a masked prior's steps reveal at least one id each.
        limits = {"top_k": self.config.image_vocab_size, "num_inference_steps": self.config.sequence_length}
        self.controls = [
            replace(control, maximum=limits[control.name]) if control.name in limits else control
            for control in CONTROLS
            if control.name in family
        ]
        self.defaults = {control.name: control.default(family[control.name]) for control in self.controls}

    @property
    def conditional(self) -> bool:
        return self.config.num_classes > 0

    @property
    def can_edit(self) -> bool:
        """Whether the prior can regenerate a region of an image (a masked prior's `inpaint_indices`)."""
        return hasattr(self.pipe.transformer, "inpaint_indices")

    def class_choices(self) -> list[str]:
        """The class picker's entries: the class names in id order (ids as text where a class has no name), then
        the unconditional choice for a class-conditional prior trained with class dropout's null class."""
        if not self.conditional:
            return [UNCONDITIONAL]
        names = {int(i): str(name) for i, name in (self.config.id2label or {}).items()}
        if not self.config.has_class_names:
            names = {}
        return [names.get(i, str(i)) for i in range(self.config.num_classes)] + [UNCONDITIONAL]

    def labels(self, picked: str | None) -> list[int] | None:
        """Class ids for the picker's value: a name or an id (`"3"`); `None` for unconditional samples. An unknown
        name or id is a `ValueError` listing the known ones."""
        if picked is None or picked == UNCONDITIONAL or not self.conditional:
            return None
        text = str(picked).strip()
        label = int(text) if text.lstrip("-").isdigit() else text
        ids = self.pipe.get_label_ids([label])
        if not 0 <= ids[0] < self.config.num_classes:
            raise ValueError(
                f"Class {label} is not a class of this prior: ids are in [0, {self.config.num_classes}). Pick one of "
                f"{', '.join(self.class_choices()[:10])}."
            )
        return ids

    def sampling_options(self, given: Mapping[str, float]) -> dict[str, Any]:
        """The family's options from the controls' values (a control's "off" value -> `None`)."""
        return {control.name: control.value(given[control.name]) for control in self.controls if control.name in given}

    def generate(
        self,
        picked: str | None,
        num_images: int,
        guidance_scale: float,
        seed: int,
        options: Mapping[str, float],
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """`num_images` images of the picked class, `uint8` `(B, C, H, W)`, as `sample_images` makes them with a
        generator seeded with `seed` on the pipeline's device (what `hf-vq generate --seed` does).

        Args:
            picked (`str`, *optional*): the class picker's value ([`labels`]).
            num_images (`int`): images to generate (at least 1).
            guidance_scale (`float`): classifier-free guidance (1: none); ignored for unconditional samples.
            seed (`int`): the random seed.
            options (`Mapping[str, float]`): the sampling controls' values, by option name.
            progress (`Callable[[int], None]`, *optional*): called with the number of forward passes of the prior
                so far, after each one (the prior's families take different numbers of steps).
        """
        num_images, seed = int(num_images), int(seed)
        if num_images < 1:
            raise ValueError(f"The number of images must be at least 1; got {num_images}.")
        labels = self.labels(picked)
        generator = torch.Generator(self.pipe.transformer.device).manual_seed(seed)
        sampling = self.sampling_options(options)
        with counting_forward_passes(self.pipe.transformer, progress):
            return sample_images(self.pipe, labels, num_images, float(guidance_scale), generator, **sampling).cpu()

    def fit_to_canvas(self, picture: Image.Image, resample=Image.BICUBIC) -> Image.Image:
        """`picture` scaled to cover the prior's canvas (its image size), then center-cropped to it."""
        height, width = self.config.image_size
        scale = max(width / picture.width, height / picture.height)
        size = (max(width, round(picture.width * scale)), max(height, round(picture.height * scale)))
        return center_crop(picture.resize(size, resample), width, height)

    def edit(
        self,
        picture: Image.Image,
        mask: Image.Image,
        picked: str | None,
        num_images: int,
        guidance_scale: float,
        seed: int,
        options: Mapping[str, float],
        progress: Callable[[int], None] | None = None,
    ) -> tuple[Image.Image, torch.Tensor]:
        """`num_images` edits of `picture` where `mask` is white, by the masked prior (`VQImagePipeline(image=...,
        mask_image=...)`): the tokens whose cells touch the mask are regenerated, the others kept.

        Args:
            picture (`PIL.Image`): the image to edit, fitted to the prior's canvas ([`fit_to_canvas`]).
            mask (`PIL.Image`): white (>= 128) where to regenerate, of `picture`'s size (fitted the same way).
            picked, num_images, guidance_scale, seed, options, progress: as in [`generate`].

        Returns:
            The fitted image and the edits, `uint8` `(B, C, H, W)`.
        """
        if not self.can_edit:
            raise ValueError(f"{type(self.pipe.transformer).__name__} cannot edit images; a masked prior can.")
        num_images, seed = int(num_images), int(seed)
        if num_images < 1:
            raise ValueError(f"The number of images must be at least 1; got {num_images}.")
        image = self.fit_to_canvas(picture.convert("RGB"))
        region = self.fit_to_canvas(mask.convert("L"), Image.NEAREST)
        if region.getextrema()[1] < 128:
            raise ValueError("Nothing is painted: paint over the region to regenerate, then edit.")
        labels = self.labels(picked)
        generator = torch.Generator(self.pipe.transformer.device).manual_seed(seed)
        guidance = float(guidance_scale) if labels is not None else 1.0
        with counting_forward_passes(self.pipe.transformer, progress):
            edits = self.pipe(
                class_labels=labels,
                image=image,
                mask_image=region,
                num_images_per_prompt=num_images,
                guidance_scale=guidance,
                generator=generator,
                output_type="pt",
                **self.sampling_options(options),
            ).images
        return image, to_uint8(edits.float(), (0.0, 1.0)).cpu()


@contextmanager
def counting_forward_passes(module: torch.nn.Module, progress: Callable[[int], None] | None):
    """Calls `progress(n)` after the n-th forward pass of `module` inside the block (nothing when `progress` is
    `None`): a prior family's sampling takes its own number of passes, each one a visible step."""
    if progress is None:
        yield
        return
    passes = 0

    def counted(*_):
        nonlocal passes
        passes += 1
        progress(passes)

    hook = module.register_forward_hook(counted)
    try:
        yield
    finally:
        hook.remove()


__all__ = ["CONTROLS", "UNCONDITIONAL", "GeneratorDemo", "SamplingControl", "counting_forward_passes"]
