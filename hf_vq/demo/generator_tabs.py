"""The generator tabs of the demo, in Gradio, for a pipeline: Generate (a class picked by name, guidance, the prior
family's sampling controls, seed, number of images, progress while sampling). The computations are
[`GeneratorDemo`]'s; this module lays out the tab and wires its events.

The sampling sliders come from `GeneratorDemo.controls` (the options the prior family takes), so a family with other
options (a masked prior's decoding steps) gets its sliders without a change here; a tab of its own (a masked
prior's edit under a painted mask) is one more function beside [`generate_tab`], added in `app.py`.

Elements the browser tests find have `elem_id`s: `class`, `seed`, `num-images`, `generate-button`, `samples`.
"""

from __future__ import annotations

import gradio as gr

from ..data import to_pil
from .generator import GeneratorDemo
from .ui import user_errors

MAX_IMAGES = 16


def generate_tab(demo: GeneratorDemo) -> None:
    """Lays out the Generate tab inside the current `gr.Blocks` and wires its event."""
    choices = demo.class_choices()
    with gr.Tab("Generate"), gr.Row():
        with gr.Column(scale=1, min_width=260):
            picked = gr.Dropdown(
                choices,
                value=choices[0],
                label="Class",
                allow_custom_value=True,
                visible=demo.conditional,
                info="a class name, or its id",
                elem_id="class",
            )
            guidance = gr.Slider(
                1.0,
                10.0,
                value=1.0,
                step=0.25,
                label="Guidance scale",
                info="1: no guidance",
                visible=demo.conditional,
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
            seed = gr.Number(0, precision=0, label="Seed", elem_id="seed")
            count = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Number of images", elem_id="num-images")
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Samples", format="png", columns=4, elem_id="samples")

    names = list(sliders)

    @user_errors
    def generate(picked_class, num_images, guidance_scale, seed_value, *values, progress=gr.Progress()):  # noqa: B008
        progress(0, desc="Sampling")

        def step(passes: int) -> None:
            progress((passes, None), desc="Sampling: forward passes of the prior", unit="passes")

        options = dict(zip(names, values))
        seed_value = 0 if seed_value is None else seed_value
        images = demo.generate(picked_class, num_images, guidance_scale, seed_value, options, progress=step)
        return [to_pil(image) for image in images]

    button.click(generate, [picked, count, guidance, seed, *sliders.values()], gallery)


__all__ = ["MAX_IMAGES", "generate_tab"]
