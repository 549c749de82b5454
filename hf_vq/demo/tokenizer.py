"""What the tokenizer tabs compute, without Gradio: an image reconstructed and measured the way `hf-vq evaluate`
measures it, its tokens drawn as a map, its code usage beside the model card's, and token edits decoded.

Everything starts from one [`Analysis`] of an uploaded image; the Gradio tabs (`tokenizer_tabs.py`) keep it in the
session's state and call the functions here with it. Bad inputs raise `ValueError` / `OSError` with a message for
the user, which the tabs show as a `gr.Error`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..data import decode_image, from_uint8, prepare_image, to_uint8
from ..evaluation.memory import check_forward_fits
from ..evaluation.metrics import codebook_statistics
from ..evaluation.reconstruction import measure_reconstructions
from .drawing import TokenGrid, draw_token_map, sequence_grid_shape

# AlexNet's stride-4 convolution and three stride-2 max pools leave no feature map below about 30 px a side: LPIPS is
# reported as not measurable for smaller images instead of failing.
LPIPS_MIN_SIDE = 32


@dataclass(frozen=True)
class TokenView:
    """One grid of ids that the token map draws: a level of the tokenizer, and one stage of a residual level.

    Args:
        name (`str`): what the user picks, e.g. `"tokens"`, `"top"`, `"tokens, stage 2 of 4"`.
        level (`int`): index into `token_layout.levels`.
        stage (`int`, *optional*): the residual stage, for a level whose ids carry a stage axis.
    """

    name: str
    level: int
    stage: int | None = None


def token_views(layout) -> list[TokenView]:
    """Every level of `layout` (coarse to fine), and every stage of a residual level, as a [`TokenView`]."""
    views = []
    for index, level in enumerate(layout.levels):
        if not level.stacked:
            views.append(TokenView(level.name, index))
            continue
        for stage in range(level.depth):
            views.append(TokenView(f"{level.name}, stage {stage + 1} of {level.depth}", index, stage))
    return views


@dataclass
class Analysis:
    """One image as the tokenizer saw it.

    Args:
        image (`torch.Tensor` of dtype `uint8`, `(C, H, W)`): the input after resizing and cropping (C = the model's
            input channels).
        reconstruction (`torch.Tensor` of dtype `uint8`, `(C, H, W)`): its 8-bit reconstruction.
        levels (`tuple[torch.Tensor, ...]`): its token ids, one tensor per level, each with a batch axis of 1.
        metrics (`dict[str, float]`): `psnr`, `ssim`, `lpips` (when measurable), and the code usage
            ([`codebook_statistics`]), as `hf-vq evaluate` computes them for one image.
    """

    image: torch.Tensor
    reconstruction: torch.Tensor
    levels: tuple[torch.Tensor, ...]
    metrics: dict[str, float]


def read_upload(path: str | os.PathLike | None) -> Image.Image:
    """The uploaded file as an RGB image; `ValueError` naming the file when there is none or it is not an image."""
    if path is None:
        raise ValueError("No image yet: upload an image (PNG, JPEG, WebP, ...) or pick one of the examples.")
    try:
        return decode_image(Path(path))
    except (OSError, ValueError) as error:
        name = Path(path).name
        detail = str(error).replace(str(path), name)  # the upload's temporary path means nothing to the user
        raise ValueError(
            f"{name} is not an image PIL can read ({type(error).__name__}: {detail}). Upload a PNG, JPEG, WebP or "
            "other image file."
        ) from None


def builtin_examples() -> list[str]:
    """The held-out built-in photos (a cat, a flower, a rocket) where the training extra installed them, else none."""
    from ..data import builtin_photo_paths

    try:
        return [str(path) for path in builtin_photo_paths("eval")]
    except FileNotFoundError:
        return []


class TokenizerDemo:
    """The computations behind the tokenizer tabs for one tokenizer.

    Args:
        model (`VQPreTrainedModel`): the tokenizer, in eval mode, on its device.
        lpips (`torch.nn.Module`, *optional*): the LPIPS network (`hf_vq.losses.lpips.load_lpips("alexnet")`);
            `None` when its weights are not available, and LPIPS is then not shown.
        card_results (`list[dict]`, *optional*): the evaluation results the model card records (`card_info.json`'s
            `results`), for the code-usage comparison.
    """

    def __init__(self, model, lpips: torch.nn.Module | None = None, card_results: Sequence[Mapping] = ()):
        self.model = model
        self.layout = model.token_layout
        self.views = token_views(self.layout)
        self.lpips = lpips
        self.card_results = [result for result in card_results if "codebook_usage" in result.get("metrics", {})]

    @property
    def sample_size(self) -> int:
        return self.model.config.sample_size

    def view(self, name: str | None) -> TokenView:
        """The [`TokenView`] called `name` (the first one for `None`)."""
        if name is None:
            return self.views[0]
        for view in self.views:
            if view.name == name:
                return view
        raise ValueError(f"Unknown token grid {name!r}; this tokenizer has {', '.join(v.name for v in self.views)}.")

    # ------------------------------------------------------------------------------------------ reconstruct

    def prepare(self, picture: Image.Image, own_size: bool = False, name: str = "The image") -> torch.Tensor:
        """`uint8` `(3, H, W)`: the picture resized and center-cropped to the model's `sample_size` (as `hf-vq
        evaluate` and `hf-vq reconstruct` do), or with `own_size` kept at its size, cropped to a multiple of the
        tokenizer's image multiple. Raises a `ValueError` when a forward pass at that size would not fit in the
        device's free memory (`hf-vq reconstruct`'s guard)."""
        image = prepare_image(picture, None if own_size else self.sample_size, self.layout.image_multiple)
        height, width = image.shape[-2:]
        fix = f"choose the model's size ({self.sample_size} px) or upload a smaller image"
        check_forward_fits(self.model, height, width, tiled=False, name=name, fix=fix)
        return image

    @torch.no_grad()
    def analyse(self, image: torch.Tensor) -> Analysis:
        """Reconstructs and measures one `uint8` `(3, H, W)` image through `hf-vq evaluate`'s measurement
        (`measure_reconstructions`: 8-bit reconstruction, PSNR / SSIM / LPIPS, code usage), and encodes its ids."""
        height, width = image.shape[-2:]
        perceptual = {"lpips": self.lpips} if self.lpips is not None and min(height, width) >= LPIPS_MIN_SIDE else {}
        measured = measure_reconstructions(self.model, [image[None]], perceptual=perceptual, keep_images=None)
        seen = measured.inputs  # (1, C, H, W): a grayscale model sees the channel mean
        ids = self.model.encode_to_indices(from_uint8(seen.to(self.model.device), self.model.config.pixel_range))
        levels = tuple(level.cpu() for level in self.layout.split(ids))
        return Analysis(seen[0], measured.reconstructions[0], levels, measured.metrics)

    def metrics_rows(self, analysis: Analysis) -> list[tuple[str, str]]:
        """(name, value) rows of the image's reconstruction metrics, as the Reconstruct tab shows them."""
        metrics = analysis.metrics
        height, width = analysis.image.shape[-2:]
        lpips = metrics.get("lpips")
        lpips_text = (
            f"{lpips:.4f}"
            if lpips is not None
            else "not measured (LPIPS weights not available)"
            if self.lpips is None
            else f"not measured (AlexNet LPIPS needs at least {LPIPS_MIN_SIDE} px a side)"
        )
        return [
            ("PSNR", f"{metrics['psnr']:.2f} dB"),
            ("SSIM", f"{metrics['ssim']:.4f}"),
            ("LPIPS (AlexNet)", lpips_text),
            ("Image", f"{width}x{height} px, {metrics['tokens']} tokens"),
        ]

    # ------------------------------------------------------------------------------------------ token map

    def view_ids(self, levels: Sequence[torch.Tensor], view: TokenView) -> torch.Tensor:
        """The ids of `view` for one image: `(h, w)` for a grid, `(n,)` for a sequence (a view, not a copy)."""
        ids = levels[view.level][0]
        return ids[..., view.stage] if view.stage is not None else ids

    def token_map(self, analysis: Analysis, view: TokenView, levels=None) -> tuple[Image.Image, TokenGrid]:
        """The ids of `view` (of `levels`, default the analysed image's) drawn over the image."""
        ids = self.view_ids(levels if levels is not None else analysis.levels, view).numpy()
        level = self.layout.levels[view.level]
        return draw_token_map(ids, level.codebook_size, analysis.image if ids.ndim == 2 else None)

    def describe_cell(self, analysis: Analysis, view: TokenView, x: float, y: float) -> str:
        """What the cell under display pixel `(x, y)` of the token map holds, in words, e.g. `"top grid, row 2,
        column 3: code 17"`."""
        _, grid = self.token_map(analysis, view)
        row, column = grid.cell_at(x, y)
        ids = self.view_ids(analysis.levels, view)
        if ids.dim() == 1:
            position = min(row * grid.columns + column, len(ids) - 1)
            where, code = f"{view.name}, position {position}", int(ids[position])
        else:
            where, code = f"{view.name}, row {row}, column {column}", int(ids[row, column])
        text = f"{where}: code {code}"
        level = self.layout.levels[view.level]
        if view.stage is not None:
            stages = analysis.levels[view.level][0]
            stages = stages[position] if ids.dim() == 1 else stages[row, column]
            text += f" (all {level.depth} stages here: {', '.join(str(int(c)) for c in stages)})"
        return text

    def grid_shape(self, view: TokenView) -> tuple[int, int]:
        """Rows and columns of `view`'s cells for the model's `sample_size` (a sequence: its near-square block)."""
        level = self.layout.levels[view.level]
        shape = level.grid_shape(self.sample_size, self.sample_size)
        return shape if len(shape) == 2 else sequence_grid_shape(shape[0])

    # ------------------------------------------------------------------------------------------ code usage

    def usage_rows(self, analysis: Analysis) -> list[dict[str, Any]]:
        """One row per code the image uses: `{"codebook", "code", "count"}`, per level and residual stage, most used
        first (the Code usage tab's histogram)."""
        rows = []
        for view in self.views:
            counts = torch.bincount(
                self.view_ids(analysis.levels, view).reshape(-1),
                minlength=self.layout.levels[view.level].codebook_size,
            )
            used = counts.nonzero().reshape(-1).tolist()
            rows += [{"codebook": view.name, "code": str(code), "count": int(counts[code])} for code in used]
        return sorted(rows, key=lambda row: -row["count"])

    def usage_table(self, analysis: Analysis) -> list[list[str]]:
        """The image's codebook usage and perplexity beside each evaluation the model card records: rows of
        `[what, images, codebook usage, perplexity]`."""
        layout = self.layout
        statistics = codebook_statistics(
            layout.codebook_counts(layout.count_codes(layout.join(analysis.levels))), layout.codebook_names
        )
        used = f"{statistics['codebook_usage']:.1%}"
        rows = [["this image", "1", used, f"{statistics['perplexity']:.1f}"]]
        for result in self.card_results:
            metrics = result["metrics"]
            dataset = result.get("dataset", "?")
            split = f" ({result['split']})" if result.get("split") else ""
            perplexity = metrics.get("perplexity")
            rows.append(
                [
                    f"model card: {dataset}{split}",
                    str(result.get("num_images", "?")),
                    f"{metrics['codebook_usage']:.1%}",
                    f"{perplexity:.1f}" if perplexity is not None else "-",
                ]
            )
        if not self.card_results:
            rows.append(
                ["model card: no evaluation recorded (run `hf-vq evaluate` on the model folder)", "-", "-", "-"]
            )
        return rows

    # ------------------------------------------------------------------------------------------ token edit

    @torch.no_grad()
    def edit(
        self,
        analysis: Analysis,
        view: TokenView,
        region: tuple[int, int, int, int],
        *,
        code: int | None = None,
        source: tuple[int, int] | None = None,
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Sets the ids of a region of `view` to one `code`, or to the ids of the region of the same size whose
        top-left cell is `source`, and decodes the result.

        Args:
            analysis (`Analysis`): the image whose tokens are edited (left unchanged).
            view (`TokenView`): the grid edited (one level, and one stage of a residual level).
            region (`(top, left, height, width)`): the cells edited, in rows and columns of the grid (a sequence
                counts as the rows of its block, in reading order).
            code (`int`, *optional*): the code every cell of the region gets.
            source (`(top, left)`, *optional*): the top-left cell of the region copied instead.

        Returns:
            The edited ids (one tensor per level) and their decoding, `uint8` `(C, H, W)`.
        """
        levels = tuple(level.clone() for level in analysis.levels)
        ids = self.view_ids(levels, view)
        grid = ids if ids.dim() == 2 else None
        if grid is None:  # a sequence: edit its near-square block, then write the block back
            rows, columns = sequence_grid_shape(len(ids))
            grid = torch.full((rows * columns,), -1, dtype=ids.dtype)
            grid[: len(ids)] = ids
            grid = grid.reshape(rows, columns)
        top, left, height, width = (int(v) for v in region)
        target = self._region(grid, top, left, height, width, "The edited region")
        if (code is None) == (source is None):
            raise ValueError("Give either one code for the region or the top-left cell of a region to copy.")
        if code is not None:
            size = self.layout.levels[view.level].codebook_size
            if not 0 <= int(code) < size:
                raise ValueError(f"The code must be in [0, {size}) for {view.name}; got {code}.")
            target.fill_(int(code))
        else:
            target.copy_(self._region(grid, *(int(v) for v in source), height, width, "The copied region").clone())
        if ids.dim() == 1:
            ids.copy_(grid.reshape(-1)[: len(ids)])
        if (ids < 0).any():
            raise ValueError("The region covers cells past the end of the sequence; pick cells that hold tokens.")
        device = self.model.device
        decoded = self.model.decode_indices(self.layout.join(tuple(level.to(device) for level in levels)))
        return levels, to_uint8(decoded, self.model.config.pixel_range)[0].cpu()

    @staticmethod
    def _region(grid: torch.Tensor, top: int, left: int, height: int, width: int, what: str) -> torch.Tensor:
        rows, columns = grid.shape
        if height < 1 or width < 1 or top < 0 or left < 0 or top + height > rows or left + width > columns:
            raise ValueError(
                f"{what} must lie inside the {rows}x{columns} grid of tokens; got rows {top} to {top + height - 1}, "
                f"columns {left} to {left + width - 1}. Pick cells with rows in [0, {rows}) and columns in "
                f"[0, {columns})."
            )
        return grid[top : top + height, left : left + width]


__all__ = [
    "LPIPS_MIN_SIDE",
    "Analysis",
    "TokenView",
    "TokenizerDemo",
    "builtin_examples",
    "read_upload",
    "token_views",
]
