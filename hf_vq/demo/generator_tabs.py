"""The generator tabs of the demo, in Gradio, for a pipeline: Generate (a class picked by name, guidance, the prior
family's sampling controls, seed, number of images, progress while sampling) and, for a prior that can edit (a
masked prior), Edit (paint over an image, regenerate what is painted). The computations are [`GeneratorDemo`]'s;
this module lays out the tabs and wires their events.

The sampling sliders come from `GeneratorDemo.controls` (the options the prior family takes), so a family with other
options (a masked prior's decoding steps) gets its sliders without a change here.

Elements the browser tests find have `elem_id`s: `class`, `seed`, `num-images`, `generate-button`, `samples` (and
`edit-*` for the Edit tab's).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from PIL import Image

from ..data import to_pil
from .drawing import display_scale
from .generator import GeneratorDemo
from .ui import user_errors

MAX_IMAGES = 16


@dataclass
class SamplingInputs:
    """The controls of one tab's sampling: the class, guidance, the family's sliders by option name, seed, count."""

    picked: gr.Dropdown
    guidance: gr.Slider
    sliders: dict[str, gr.Slider]
    seed: gr.Number
    count: gr.Slider

    def components(self) -> list:
        return [self.picked, self.count, self.guidance, self.seed, *self.sliders.values()]


def sampling_inputs(demo: GeneratorDemo, prefix: str = "", count: int = 4) -> SamplingInputs:
    """Lays out the sampling controls in the current column; element ids start with `prefix`."""
    choices = demo.class_choices()
    picked = gr.Dropdown(
        choices,
        value=choices[0],
        label="Class",
        allow_custom_value=True,
        visible=demo.conditional,
        info="a class name, or its id",
        elem_id=f"{prefix}class",
    )
    guidance = gr.Slider(
        1.0, 10.0, value=1.0, step=0.25, label="Guidance scale", info="1: no guidance", visible=demo.conditional
    )
    sliders = {
        control.name: gr.Slider(
            control.minimum,
            control.maximum,
            value=demo.defaults[control.name],
            step=control.step,
            label=control.label,
            info=control.info,
        )
        for control in demo.controls
    }
    seed = gr.Number(0, precision=0, label="Seed", elem_id=f"{prefix}seed")
    number = gr.Slider(1, MAX_IMAGES, value=count, step=1, label="Number of images", elem_id=f"{prefix}num-images")
    return SamplingInputs(picked, guidance, sliders, seed, number)


def progress_callback(progress: gr.Progress):
    """A `progress(passes)` for [`GeneratorDemo`] that shows the prior's forward passes so far in the page."""
    progress(0, desc="Sampling")

    def step(passes: int) -> None:
        progress((passes, None), desc="Sampling: forward passes of the prior", unit="passes")

    return step


def generate_tab(demo: GeneratorDemo) -> None:
    """Lays out the Generate tab inside the current `gr.Blocks` and wires its event."""
    with gr.Tab("Generate"), gr.Row():
        with gr.Column(scale=1, min_width=260):
            inputs = sampling_inputs(demo)
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Samples", format="png", columns=4, elem_id="samples")
    names = list(inputs.sliders)

    @user_errors
    def generate(picked, num_images, guidance_scale, seed, *values, progress=gr.Progress()):  # noqa: B008
        options = dict(zip(names, values))
        step = progress_callback(progress)
        images = demo.generate(picked, num_images, guidance_scale, seed or 0, options, progress=step)
        return [to_pil(image) for image in images]

    button.click(generate, inputs.components(), gallery)


def edit_tab(demo: GeneratorDemo) -> None:
    """Lays out the Edit tab (a masked prior's inpainting) inside the current `gr.Blocks` and wires its event."""
    with gr.Tab("Edit"), gr.Row():
        with gr.Column(scale=1, min_width=260):
            editor = gr.ImageEditor(
                label="Image: paint over what to regenerate",
                type="pil",
                sources=["upload", "clipboard"],
                brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                layers=False,
                elem_id="edit-image",
            )
            inputs = sampling_inputs(demo, prefix="edit-", count=2)
            button = gr.Button("Regenerate the painted region", variant="primary", elem_id="edit-button")
        with gr.Column(scale=2):
            fitted = gr.Image(label="The image on the prior's canvas", interactive=False, format="png")
            gallery = gr.Gallery(label="Edits", format="png", columns=4, elem_id="edit-samples")
    names = list(inputs.sliders)

    @user_errors
    def edit(value, picked, num_images, guidance_scale, seed, *values, progress=gr.Progress()):  # noqa: B008
        if not value or value.get("background") is None:
            raise ValueError("No image yet: upload an image, paint over what to regenerate, then edit.")
        picture = value["background"]
        mask = Image.new("L", picture.size, 0)
        for layer in value.get("layers") or []:  # painted pixels are the layers' opaque ones
            painted = layer.convert("RGBA").getchannel("A").resize(picture.size, Image.NEAREST)
            mask.paste(255, (0, 0), painted.point(lambda alpha: 255 * (alpha > 0)))
        options = dict(zip(names, values))
        step = progress_callback(progress)
        image, edits = demo.edit(picture, mask, picked, num_images, guidance_scale, seed or 0, options, step)
        scale = display_scale(image.height, image.width)  # a small canvas, scaled up as the token maps are
        return image.resize((image.width * scale, image.height * scale), Image.NEAREST), [to_pil(e) for e in edits]

    button.click(edit, [editor, *inputs.components()], [fitted, gallery])


__all__ = ["MAX_IMAGES", "edit_tab", "generate_tab", "sampling_inputs"]
