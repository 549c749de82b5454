"""LlamaGen's 2-D rotary position embedding (Sun et al. 2024, arXiv:2406.06525), as a drop-in for the rotary module
of transformers' Llama (`model.model.rotary_emb`).

Llama's rotary module turns pair `(x[j], x[j + d/2])` of each head (d = head_dim, Llama's `rotate_half` layout) by
`position * theta_j`. Here the position is a place on the image: half of each head's pairs turn with the token's
grid row, the other half with its column, each half with the frequencies `rope_theta ** (-4i / d)`, i < d/4 (computed
over d/2, as LlamaGen does), and the tokens of the prefix (the class slot) get `cos = sin = 0`, so their queries and
keys are zero: the prefix is attended to with a score of 0 and contributes its value only. LlamaGen writes the same
rotation on interleaved pairs `(x[2j], x[2j+1])`; its checkpoints convert by permuting the rows of q and k
(`hf_vq.integrations.llamagen`).

A sequence is `[prefix, image ids in the token layout's order]`. Rows and columns are counted in units of the finest
grid, so every level of a hierarchical tokenizer and every residual stage of a position turns with its image location.
"""

from __future__ import annotations

import torch
from torch import nn


def grid_positions(token_layout, image_size) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Row and column of every image id of a sequence in the layout's order, in units of the finest grid (0-based).

    Args:
        token_layout (`TokenLayout`):
            The tokenizer's token layout; every level must be a grid.
        image_size (`list[int]`):
            `[height, width]` of the images in pixels.

    Returns:
        `(rows, cols)`, two `LongTensor`s of length `sequence_length`.
    """
    height, width = image_size
    flat = [level.name for level in token_layout.levels if not level.is_grid]
    if flat:
        raise ValueError(
            f"2-D positions need grid levels; got the 1-D levels {flat}, which have no rows or columns. Use 1-D "
            "positions (position_embedding='rope') for this tokenizer."
        )
    finest_rows, finest_cols = max(level.grid_shape(height, width) for level in token_layout.levels)
    rows, cols = [], []
    for level in token_layout.levels:
        h, w = level.grid_shape(height, width)
        # Row i of an h-row grid starts at finest row i * finest_rows / h; ids are in raster order, stages innermost.
        rows.append((torch.arange(h) * finest_rows // h).repeat_interleave(w * level.depth))
        cols.append((torch.arange(w) * finest_cols // w).repeat_interleave(level.depth).repeat(h))
    return torch.cat(rows), torch.cat(cols)


class Rope2DEmbedding(nn.Module):
    r"""
    LlamaGen's 2-D rotary embedding with the interface of Llama's rotary module: `forward(x, position_ids)` returns
    `(cos, sin)` of shape `(batch, seq, head_dim)` in `x.dtype`, for Llama's `apply_rotary_pos_emb`.

    Args:
        config (`VQPriorConfig`):
            A prior config: its `token_layout` and `image_size` give the grid, `head_dim` (or `hidden_size /
            num_attention_heads`, divisible by 4) and `rope_parameters["rope_theta"]` the frequencies.
        num_prefix_tokens (`int`, *optional*, defaults to 1):
            Positions before the image ids (the class slot); they get `cos = sin = 0`.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq.modeling.configuration_prior import VQPriorConfig
    >>> from hf_vq.modeling.rope2d import Rope2DEmbedding
    >>> config = VQPriorConfig(
    ...     token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}], image_size=16,
    ...     num_classes=3, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    >>> cos, sin = Rope2DEmbedding(config)(torch.zeros(1), torch.arange(17)[None])
    >>> cos.shape, float(cos[0, 0].abs().max()), float(cos[0, 1].min())
    (torch.Size([1, 17, 8]), 0.0, 1.0)

    ```
    """

    def __init__(self, config, num_prefix_tokens: int = 1):
        super().__init__()
        self.head_dim = config.head_dim
        if self.head_dim % 4:
            raise ValueError(
                f"2-D rotary positions split each head into row and column pairs, so the head size must be divisible "
                f"by 4; got head_dim = {self.head_dim}. Change hidden_size or num_attention_heads."
            )
        self.rope_theta = float(config.rope_parameters["rope_theta"])
        self.num_prefix_tokens = num_prefix_tokens
        self.token_layout, self.image_size = config.token_layout, list(config.image_size)
        grid_positions(self.token_layout, self.image_size)  # refuses 1-D levels now rather than at the first forward
        # (cos, sin) tables per device, computed on first use: no buffers, so building on the meta device (as
        # `from_pretrained` does) leaves nothing for `_init_weights` to fill in.
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def inverse_frequencies(self) -> torch.Tensor:
        """`(head_dim / 4,)`: the frequencies of each half, computed over head_dim / 2 (LlamaGen's choice)."""
        half = self.head_dim // 2
        return 1.0 / (self.rope_theta ** (torch.arange(0, half, 2).float() / half))

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """`(cos, sin)`, each `(num_prefix_tokens + L, head_dim)` in fp32: the prefix rows are 0."""
        if device not in self._tables:
            with torch.device("cpu"):  # not the meta device a `from_pretrained` may have built the model under
                rows, cols = grid_positions(self.token_layout, self.image_size)
                frequencies = self.inverse_frequencies()
                angles = torch.cat(  # (L, head_dim / 2): row pairs, then column pairs
                    [rows.float()[:, None] * frequencies, cols.float()[:, None] * frequencies], dim=-1
                )
                angles = torch.cat([angles, angles], dim=-1)  # pair j is (x[j], x[j + head_dim / 2])
                prefix = torch.zeros(self.num_prefix_tokens, self.head_dim)
            cos, sin = torch.cat([prefix, angles.cos()]), torch.cat([prefix, angles.sin()])
            self._tables[device] = (cos.to(device), sin.to(device))
        return self._tables[device]

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.tables(x.device)
        if position_ids.numel() and int(position_ids.max()) >= len(cos):
            raise ValueError(
                f"2-D rotary positions cover {len(cos)} positions (prefix + image ids); got position "
                f"{int(position_ids.max())}. Sequences of this prior are at most {len(cos)} tokens long."
            )
        return cos[position_ids].to(x.dtype), sin[position_ids].to(x.dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, rope_theta={self.rope_theta}, prefix={self.num_prefix_tokens}"


__all__ = ["Rope2DEmbedding", "grid_positions"]
