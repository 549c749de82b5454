"""The tokenizer tabs of the demo, in Gradio: an image picked once, then Reconstruct, Token map, Code usage and Token
edit views of it. The computations are [`TokenizerDemo`]'s; this module lays out the page and wires its events.

Elements the browser tests find have `elem_id`s: `upload`, `metrics`, `token-map`, `cell`, `usage-table`,
`edit-button`, `edited`.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from .drawing import enlarge, heat_map
from .tokenizer import Analysis, TokenizerDemo, read_upload
from .ui import markdown_table, user_errors

OWN_SIZE = "the image's own size"
MODE_CODE = "set every cell to one code"
MODE_COPY = "copy the region starting at another cell"


def model_size_choice(demo: TokenizerDemo) -> str:
    return f"the model's size ({demo.sample_size} px, as hf-vq evaluate measures)"


def usage_frame(demo: TokenizerDemo, analysis: Analysis) -> pd.DataFrame:
    return pd.DataFrame(demo.usage_rows(analysis), columns=["codebook", "code", "count"])


def tokenizer_tabs(demo: TokenizerDemo, examples: list[str]) -> None:
    """Lays out the tokenizer tabs inside the current `gr.Blocks` and wires their events."""
    views = [view.name for view in demo.views]
    analysis = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            upload = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="upload")
            size = gr.Radio(
                [model_size_choice(demo), OWN_SIZE],
                value=model_size_choice(demo),
                label="Size",
                info="at its own size, an image too large for the device's memory is refused",
            )
            if examples:
                gr.Examples([[path] for path in examples], inputs=upload, label="Built-in photos")
        with gr.Column(scale=3):
            with gr.Tab("Reconstruct"):
                with gr.Row():
                    shown = gr.Image(label="Input, as the model sees it", interactive=False, format="png")
                    reconstruction = gr.Image(label="Reconstruction", interactive=False, format="png")
                    difference = gr.Image(label="Difference", interactive=False, format="png")
                metrics = gr.Markdown(elem_id="metrics")
            with gr.Tab("Token map"):
                view = gr.Radio(views, value=views[0], label="Grid", visible=len(views) > 1)
                token_map = gr.Image(
                    label="Tokens, one colour per code (click a cell)",
                    interactive=False,
                    format="png",
                    elem_id="token-map",
                )
                cell = gr.Textbox(label="Cell", interactive=False, elem_id="cell")
            with gr.Tab("Code usage"):
                plot = gr.BarPlot(
                    x="code", y="count", color="codebook", sort="-y", label="Codes used by this image", x_title="code"
                )
                usage = gr.Markdown(elem_id="usage-table")
            with gr.Tab("Token edit"):
                gr.Markdown(
                    "Pick a region of the token grid (its top-left cell, height and width, in cells) and set its "
                    "tokens to one code, or to the codes of another region; the edited tokens are decoded."
                )
                edit_view = gr.Radio(views, value=views[0], label="Grid", visible=len(views) > 1)
                with gr.Row():
                    top = gr.Number(0, precision=0, label="Top row", minimum=0)
                    left = gr.Number(0, precision=0, label="Left column", minimum=0)
                    height = gr.Number(2, precision=0, label="Height (cells)", minimum=1)
                    width = gr.Number(2, precision=0, label="Width (cells)", minimum=1)
                mode = gr.Radio([MODE_CODE, MODE_COPY], value=MODE_CODE, label="Edit")
                with gr.Row():
                    code = gr.Number(0, precision=0, label="Code", minimum=0)
                    source_top = gr.Number(0, precision=0, label="Copy from row", minimum=0)
                    source_left = gr.Number(0, precision=0, label="Copy from column", minimum=0)
                button = gr.Button("Decode the edited tokens", variant="primary", elem_id="edit-button")
                with gr.Row():
                    edited_map = gr.Image(label="Edited tokens", interactive=False, format="png")
                    before = gr.Image(label="Reconstruction, before the edit", interactive=False, format="png")
                    edited = gr.Image(label="Decoded edit", interactive=False, format="png", elem_id="edited")

    @user_errors
    def analyse(path: str | None, size_choice: str, view_name: str):
        if path is None:  # the upload was cleared: so is everything shown of it
            return None, None, None, None, "", None, "", None, "", None, None, None
        picture = read_upload(path)
        image = demo.prepare(picture, own_size=size_choice == OWN_SIZE, name=Path(path).name)
        result = demo.analyse(image)
        difference_map, peak = heat_map(result.image, result.reconstruction)
        rows = demo.metrics_rows(result)
        caption = f"Difference: |input - reconstruction|, brightest = {peak} grey levels (of 255)."
        table = markdown_table(["", "this image"], [list(row) for row in rows]) + f"\n\n{caption}"
        usage_rows = demo.usage_table(result)
        usage_text = markdown_table(["", "images", "codebook usage", "perplexity"], usage_rows)
        return (
            result,
            enlarge(result.image),
            enlarge(result.reconstruction),
            difference_map,
            table,
            demo.token_map(result, demo.view(view_name))[0],
            "",
            usage_frame(demo, result),
            usage_text,
            None,
            enlarge(result.reconstruction),
            None,
        )

    outputs = [analysis, shown, reconstruction, difference, metrics, token_map, cell, plot, usage, edited_map, before]
    outputs.append(edited)
    upload.change(analyse, [upload, size, view], outputs)
    size.change(analyse, [upload, size, view], outputs)

    @user_errors
    def redraw(result: Analysis | None, view_name: str):
        if result is None:
            return None, ""
        return demo.token_map(result, demo.view(view_name))[0], ""

    view.change(redraw, [analysis, view], [token_map, cell])

    @user_errors
    def describe(result: Analysis | None, view_name: str, event: gr.SelectData):
        if result is None:
            raise ValueError("No image yet: upload an image or pick one of the examples first.")
        x, y = event.index
        return demo.describe_cell(result, demo.view(view_name), x, y)

    token_map.select(describe, [analysis, view], cell)

    @user_errors
    def apply_edit(result: Analysis | None, view_name, mode_choice, *numbers):
        if result is None:
            raise ValueError("No image yet: upload an image or pick one of the examples first.")
        top_, left_, height_, width_, code_, source_top_, source_left_ = (int(n or 0) for n in numbers)
        chosen = demo.view(view_name)
        region = (top_, left_, height_, width_)
        if mode_choice == MODE_CODE:
            levels, image = demo.edit(result, chosen, region, code=code_)
        else:
            levels, image = demo.edit(result, chosen, region, source=(source_top_, source_left_))
        return demo.token_map(result, chosen, levels)[0], enlarge(image)

    numbers = [top, left, height, width, code, source_top, source_left]
    button.click(apply_edit, [analysis, edit_view, mode, *numbers], [edited_map, edited])


__all__ = ["OWN_SIZE", "tokenizer_tabs"]
