"""How a tokenizer lays out its tokens: levels, grid shapes, vocabulary sizes, and one flat sequence for a prior.

Every hf-vq tokenizer describes itself with a [`TokenLayout`] (`model.token_layout`), and everything that handles
token ids reads it instead of branching on the model type: the models' input checks, model cards, evaluation and
training's code-usage statistics, `hf-vq encode` / `decode`, and a prior over the tokens.

- A single-grid tokenizer (VQ-GAN, VQ-VAE) has one level: ids `(B, h, w)`, or `(B, h, w, Q)` for residual VQ with
  Q ids per position (coarse to fine).
- A hierarchical tokenizer (VQ-VAE-2) has several levels, coarse to fine, each with its own downsampling factor
  and codebook; its ids are a tuple with one tensor per level.

A prior sees one sequence: levels coarse to fine, each in raster order, the Q ids of a position together; the ids
of level l and stage q are shifted by `offsets[l][q]` so that every (level, stage) has its own vocabulary range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Indices = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class TokenLevel:
    r"""
    One grid of tokens.

    Args:
        name (`str`):
            What the level is called in logs and cards (`"tokens"` for a single grid; `"top"`, `"bottom"`).
        downsampling_factor (`int`):
            Image side / grid side.
        codebook_size (`int`):
            K: ids of this level are in `[0, K)`.
        depth (`int`, *optional*, defaults to 1):
            Ids per grid position (the stages of a residual quantizer, coarse to fine).
    """

    name: str
    downsampling_factor: int
    codebook_size: int
    depth: int = 1

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        return height // self.downsampling_factor, width // self.downsampling_factor

    def token_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one image's ids at this level: `(h, w)`, or `(h, w, depth)` when `depth > 1`."""
        grid = self.grid_shape(height, width)
        return grid if self.depth == 1 else (*grid, self.depth)

    @property
    def layout_text(self) -> str:
        return "batch, height, width" if self.depth == 1 else f"batch, height, width, {self.depth}"


@dataclass(frozen=True)
class TokenLayout:
    r"""
    The levels of a tokenizer, coarse to fine.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq.modeling.token_layout import TokenLayout, TokenLevel
    >>> layout = TokenLayout((TokenLevel("tokens", downsampling_factor=4, codebook_size=16),))
    >>> layout.token_shapes(32, 32)
    [(8, 8)]
    >>> ids = torch.randint(0, 16, (2, 8, 8))
    >>> torch.equal(layout.unflatten(layout.flatten(ids), 32, 32), ids)
    True
    ```
    """

    levels: tuple[TokenLevel, ...]

    def __post_init__(self):
        if not self.levels:
            raise ValueError("A TokenLayout needs at least one level.")

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def downsampling_factor(self) -> int:
        """The largest factor: image sides must be divisible by it for every level's grid to be whole."""
        return max(level.downsampling_factor for level in self.levels)

    def token_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        return [level.token_shape(height, width) for level in self.levels]

    def sequence_length(self, height: int, width: int) -> int:
        """Ids of one image, all levels and stages together."""
        return sum(_numel(shape) for shape in self.token_shapes(height, width))

    # ------------------------------------------------------------------------------------------ ids as levels

    def split(self, indices: Indices) -> tuple[torch.Tensor, ...]:
        """The ids as a tuple with one tensor per level (a single-level model's tensor becomes a 1-tuple)."""
        if isinstance(indices, torch.Tensor):
            return (indices,)
        if isinstance(indices, (tuple, list)):
            return tuple(indices)
        raise TypeError(
            f"Token ids must be a torch.Tensor{' or a tuple of them, one per level' if self.num_levels > 1 else ''}; "
            f"got {type(indices).__name__}."
        )

    def join(self, levels: Sequence[torch.Tensor]) -> Indices:
        """The inverse of [`split`]: a tensor for a single level, else a tuple (coarse to fine)."""
        levels = tuple(levels)
        return levels[0] if self.num_levels == 1 else levels

    def check(self, indices: Indices) -> tuple[torch.Tensor, ...]:
        """Validates ids against the layout and returns them split into levels.

        Raises `TypeError` for a non-integer tensor, `ValueError` for a wrong number of levels, a wrong shape,
        grids that do not belong to one image size, or ids outside a level's codebook.
        """
        levels = self.split(indices)
        if len(levels) != self.num_levels:
            names = ", ".join(level.name for level in self.levels)
            raise ValueError(
                f"Expected token ids for {self.num_levels} levels ({names}, coarse to fine); got {len(levels)}. "
                "Pass what `encode_to_indices` returns."
            )
        image_sizes = set()
        for level, ids in zip(self.levels, levels):
            where = f" at level {level.name!r}" if self.num_levels > 1 else ""
            if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex():
                received = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
                raise TypeError(
                    f"Token ids{where} must be an integer tensor of shape ({level.layout_text}); got {received}. "
                    "Use `.long()`."
                )
            rank = 3 if level.depth == 1 else 4
            if ids.dim() != rank or (level.depth > 1 and ids.shape[-1] != level.depth):
                short = level.layout_text.replace("height", "h").replace("width", "w")
                raise ValueError(
                    f"Token ids{where} must have shape ({level.layout_text}); got {tuple(ids.shape)}. A flat sequence "
                    f"of h*w positions reshapes with `indices.view({short})`."
                )
            size = level.codebook_size
            if ids.numel() and (ids.min() < 0 or ids.max() >= size):
                raise ValueError(
                    f"Token ids{where} must be in [0, {size}) for this codebook; got values in "
                    f"[{int(ids.min())}, {int(ids.max())}]. Were they produced by a model with another codebook size?"
                )
            image_sizes.add((ids.shape[1] * level.downsampling_factor, ids.shape[2] * level.downsampling_factor))
        if len(image_sizes) > 1 or len({ids.shape[0] for ids in levels}) > 1:
            shapes = ", ".join(f"{level.name} {tuple(ids.shape)}" for level, ids in zip(self.levels, levels))
            raise ValueError(
                f"The levels' token grids do not belong to one batch of images of one size: {shapes} (factors "
                f"{[level.downsampling_factor for level in self.levels]}). Pass the levels of the same images."
            )
        return levels

    # ------------------------------------------------------------------------------------------ statistics

    def count_codes(self, indices: Indices) -> list[torch.Tensor]:
        """Histograms of the ids, one `(depth, K)` tensor per level (a row per residual stage)."""
        counts = []
        for level, ids in zip(self.levels, self.split(indices)):
            stages = ids.reshape(-1, level.depth).T  # (depth, N)
            counts.append(torch.stack([torch.bincount(row, minlength=level.codebook_size) for row in stages]))
        return counts

    # ------------------------------------------------------------------------------------------ one sequence

    @property
    def offsets(self) -> list[list[int]]:
        """`offsets[l][q]`: where the ids of level l, stage q start in the joint vocabulary."""
        offsets, start = [], 0
        for level in self.levels:
            offsets.append([start + q * level.codebook_size for q in range(level.depth)])
            start += level.depth * level.codebook_size
        return offsets

    @property
    def vocabulary_size(self) -> int:
        """Size of the joint vocabulary of [`flatten`]: the sum over levels of `depth × K`."""
        return sum(level.depth * level.codebook_size for level in self.levels)

    def flatten(self, indices: Indices) -> torch.LongTensor:
        """Ids -> `(B, sequence_length)` in the joint vocabulary: levels coarse to fine, raster order, stages of a
        position together."""
        pieces = []
        for level, ids, offsets in zip(self.levels, self.split(indices), self.offsets):
            shift = torch.tensor(offsets, device=ids.device, dtype=torch.long)
            ids = ids.long().reshape(ids.shape[0], -1, level.depth) + shift  # (B, h*w, depth)
            pieces.append(ids.reshape(ids.shape[0], -1))
        return torch.cat(pieces, dim=1)

    def unflatten(self, sequence: torch.Tensor, height: int, width: int) -> Indices:
        """The inverse of [`flatten`] for images of `height` × `width` pixels."""
        expected = self.sequence_length(height, width)
        if sequence.dim() != 2 or sequence.shape[1] != expected:
            raise ValueError(
                f"A token sequence for {height}x{width} images must have shape (batch, {expected}); got "
                f"{tuple(sequence.shape)}."
            )
        levels, start = [], 0
        for level, offsets in zip(self.levels, self.offsets):
            shape = level.token_shape(height, width)
            n = _numel(shape)
            shift = torch.tensor(offsets, device=sequence.device, dtype=torch.long)
            ids = sequence[:, start : start + n].reshape(sequence.shape[0], -1, level.depth) - shift
            levels.append(ids.reshape(sequence.shape[0], *shape))
            start += n
        return self.join(levels)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for side in shape:
        n *= side
    return n


__all__ = ["Indices", "TokenLayout", "TokenLevel"]
