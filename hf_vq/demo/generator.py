"""What the generator tabs compute, without Gradio: images from a `VQImagePipeline` for a class picked by name, with
the prior family's own sampling options, through `hf_vq.pipelines.sample_images` (what `hf-vq generate` calls), so
that a seed gives the demo the images the pipeline and the command give.

The sampling controls are read from the prior (`transformer.sampling_options()`): a family shows the controls of the
options it takes, so the autoregressive prior shows temperature, top-k and top-p, and a masked prior its decoding
steps, with no change here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

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
        self.controls = [control for control in CONTROLS if control.name in family]
        # Top-k counts image ids: at most the prior's image vocabulary.
        vocabulary = self.config.image_vocab_size
        self.controls = [replace(c, maximum=vocabulary) if c.name == "top_k" else c for c in self.controls]
        self.defaults = {control.name: control.default(family[control.name]) for control in self.controls}

    @property
    def conditional(self) -> bool:
        return self.config.num_classes > 0

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
        passes = 0

        def counted(*_):
            nonlocal passes
            passes += 1
            progress(passes)

        hook = self.pipe.transformer.register_forward_hook(counted) if progress is not None else None
        try:
            return sample_images(self.pipe, labels, num_images, float(guidance_scale), generator, **sampling).cpu()
        finally:
            if hook is not None:
                hook.remove()


__all__ = ["CONTROLS", "UNCONDITIONAL", "GeneratorDemo", "SamplingControl"]
