"""What every Llama-based prior family shares: where each position of the token sequence sits (its grid row and
column, the id range it may hold), the position embeddings built on that ("rope+2d", "rope2d"), their weight init,
and saving.

A family class lists [`LlamaPriorMixin`] first, before its transformers base, so that `save_pretrained` and
`_init_weights` here wrap the base's through `super()`; the prior interface ([`VQPriorMixin`]) comes last.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init

from .rope2d import Rope2DEmbedding
from .saving_utils import follow_umask


class GridPositionEmbedding(nn.Module):
    """Learned row and column embeddings added to each image token ("rope+2d"). Row / column 0 is reserved for the
    class prefix; image tokens use 1 + their row / column in units of the finest grid, so every level of a
    hierarchical tokenizer and every residual stage of a position shares the embedding of its image location."""

    def __init__(self, num_rows: int, num_cols: int, hidden_size: int):
        super().__init__()
        self.row = nn.Parameter(torch.empty(num_rows + 1, hidden_size))
        self.col = nn.Parameter(torch.empty(num_cols + 1, hidden_size))

    def forward(self, rows: torch.LongTensor, cols: torch.LongTensor) -> torch.Tensor:
        return self.row[rows] + self.col[cols]


class LlamaPriorMixin:
    """Position tables, 2-D position modules, init and saving of a prior whose backbone is `self.model`, a
    transformers `LlamaModel`, and whose config is a `VQPriorConfig` (or a subclass)."""

    def _init_position_modules(self) -> None:
        """Call in `__init__` once `self.model` exists, before `post_init`: the learned row / column embeddings of
        "rope+2d", or LlamaGen's 2-D rotary module in place of Llama's 1-D one for "rope2d" (same interface)."""
        self.grid_position_embedding = None
        if self.config.position_embedding == "rope+2d":
            self.grid_position_embedding = GridPositionEmbedding(*self._finest_grid(), self.config.hidden_size)
        if self.config.position_embedding == "rope2d":
            self.model.rotary_emb = Rope2DEmbedding(self.config)
        self._layout_tables: dict[torch.device, dict[str, torch.Tensor]] = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with the weights given the process umask's mode like the folder's other
        files (safetensors writes them owner-only; see `saving_utils.py`)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        follow_umask(save_directory)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, GridPositionEmbedding):
            init.normal_(module.row, mean=0.0, std=self.config.initializer_range)
            init.normal_(module.col, mean=0.0, std=self.config.initializer_range)
        else:
            super()._init_weights(module)

    def _finest_grid(self) -> tuple[int, int]:
        """Rows and columns of the largest grid level, the unit of every grid's positions (sequences have none)."""
        layout, size = self.config.token_layout, self.config.image_size
        return max((level.grid_shape(*size) for level in layout.levels if level.is_grid), default=(0, 0))

    def _position_tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """`rows` / `cols`, per sequence position (length 1 + L): the grid row / column in finest-grid units, 0 for
        the prefix. `low` / `high`, per image position (length L): the range `[low, high)` of ids it may hold."""
        if device not in self._layout_tables:
            self._layout_tables[device] = self._build_position_tables(device)
        return self._layout_tables[device]

    def _build_position_tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        layout, (height, width) = self.config.token_layout, self.config.image_size
        finest_rows, finest_cols = self._finest_grid()
        rows, cols, low, high = [torch.zeros(1, dtype=torch.long)], [torch.zeros(1, dtype=torch.long)], [], []
        for level, offsets in zip(layout.levels, layout.offsets):
            positions = math.prod(level.grid_shape(height, width))
            if level.is_grid:  # row i of an h-row grid starts at finest row i * finest_rows / h (any grid size)
                h, w = level.grid_shape(height, width)
                grid_rows = (torch.arange(h) * finest_rows // h).repeat_interleave(w * level.depth)  # raster order
                grid_cols = (torch.arange(w) * finest_cols // w).repeat_interleave(level.depth).repeat(h)
                rows.append(1 + grid_rows)
                cols.append(1 + grid_cols)
            else:  # a sequence has no rows or columns ("rope+2d" refuses it): the prefix's 0, never read
                rows.append(torch.zeros(positions * level.depth, dtype=torch.long))
                cols.append(torch.zeros(positions * level.depth, dtype=torch.long))
            start = torch.tensor(offsets).repeat(positions)
            low.append(start)
            high.append(start + level.codebook_size)
        tables = {"rows": rows, "cols": cols, "low": low, "high": high}
        return {name: torch.cat(parts).to(device) for name, parts in tables.items()}
