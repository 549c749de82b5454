"""How a tokenizer lays out its tokens: levels, token shapes, codebooks, and one flat sequence for a prior.

Every hf-vq tokenizer describes itself with a [`TokenLayout`] (`model.token_layout`), and everything that handles
token ids reads it instead of branching on the model type: the models' input checks, model cards, evaluation and
training's code-usage statistics, `hf-vq encode` / `decode`, token sets, and a prior over the tokens.

Each level ([`TokenLevel`], `token_level.py`) gives its own token shape for an image size: a grid by a downsampling
factor, a grid of a fixed side (one scale of a VAR-style multi-scale tokenizer), or a 1-D sequence of a fixed length
(TiTok-style tokenizers).

A residual quantizer gives each position `depth` ids (its stages, coarse to fine) on a last axis. Levels may share
one codebook (`codebook="..."`, a vocabulary group: VAR's scales all draw from one codebook); a level without one
has its own. The layout's `image_multiple` is the one number an image side must be divisible by.

A prior sees one sequence: levels coarse to fine, each in raster order, the ids of a position's stages together; the
ids of codebook c and stage q are shifted by one offset so that every (codebook, stage) has its own vocabulary range,
shared by the levels that share the codebook.

The dict form of a level lives in `TokenLevel.to_dict` / `from_dict`; a layout's is `TokenLayout.to_dict` /
`from_dict` (its levels plus `image_multiple`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .token_level import TokenLevel, is_positive_int

Indices = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class TokenLayout:
    r"""
    The levels of a tokenizer, coarse to fine, and the size an image side must be divisible by.

    Args:
        levels (`tuple[TokenLevel, ...]`):
            The levels, coarse to fine: the order of the ids of one image in [`flatten`].
        image_multiple (`int`, *optional*):
            What image height and width must be divisible by. Defaults to the least common multiple of the grid
            levels' downsampling factors (1 without any), so that every grid is whole; a tokenizer whose encoder
            needs more (e.g. the patch size of a 1-D tokenizer) gives it.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq.modeling.token_layout import TokenLayout, TokenLevel
    >>> layout = TokenLayout((TokenLevel("tokens", downsampling_factor=4, codebook_size=16),))
    >>> layout.token_shapes(32, 32), layout.image_multiple
    ([(8, 8)], 4)
    >>> ids = torch.randint(0, 16, (2, 8, 8))
    >>> torch.equal(layout.unflatten(layout.flatten(ids), 32, 32), ids)
    True
    >>> scales = TokenLayout(
    ...     tuple(TokenLevel(f"scale_{s}", side=s, codebook_size=64, codebook="scales") for s in (1, 2, 3)),
    ...     image_multiple=16)
    >>> scales.sequence_length(48, 48), scales.vocabulary_size
    (14, 64)

    ```
    """

    levels: tuple[TokenLevel, ...]
    image_multiple: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(self.levels))
        if not self.levels:
            raise ValueError("A TokenLayout needs at least one level.")
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(
                f"A TokenLayout's level names must differ (they name tensors and statistics); got {names}."
            )
        factors = [level.downsampling_factor for level in self.levels if level.downsampling_factor is not None]
        whole = math.lcm(*factors) if factors else 1
        if self.image_multiple is None:
            object.__setattr__(self, "image_multiple", whole)
        elif not is_positive_int(self.image_multiple) or self.image_multiple % whole:
            raise ValueError(
                f"`image_multiple` must be a positive multiple of every grid level's downsampling factor {factors}; "
                f"got {self.image_multiple!r}. Use {whole} or a multiple of it."
            )
        for level in self.levels:
            first = next(other for other in self.levels if other.codebook_name == level.codebook_name)
            if (level.codebook_size, level.depth) != (first.codebook_size, first.depth):
                raise ValueError(
                    f"Levels {first.name!r} and {level.name!r} share the codebook {level.codebook_name!r}, so they "
                    f"must agree on (codebook_size, depth); got {(first.codebook_size, first.depth)} and "
                    f"{(level.codebook_size, level.depth)}. Give them the same values or different codebooks."
                )

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def downsampling_factor(self) -> int:
        """Deprecated: the old name of [`image_multiple`] (the largest grid factor of the grid-only layouts)."""
        warnings.warn(
            "`TokenLayout.downsampling_factor` is deprecated; use `image_multiple` (what image sides must be "
            "divisible by), or a level's own `downsampling_factor`.",
            FutureWarning,
            stacklevel=2,
        )
        return self.image_multiple

    def token_shapes(self, height: int, width: int) -> list[tuple[int, ...]]:
        return [level.token_shape(height, width) for level in self.levels]

    def sequence_length(self, height: int, width: int) -> int:
        """Ids of one image, all levels and stages together."""
        return sum(math.prod(shape) for shape in self.token_shapes(height, width))

    # ------------------------------------------------------------------------------------------ image sizes

    def nearest_image_size(self, side: int) -> int:
        """The multiple of `image_multiple` nearest to `side` (at least `image_multiple`)."""
        return max(1, round(side / self.image_multiple)) * self.image_multiple

    def image_multiple_text(self) -> str:
        """What `image_multiple` is, in words: `"the downsampling factor 16"` for one grid, `"the top grid's
        downsampling factor 8"` when the coarsest of several grids sets it, else `"the tokenizer's image multiple
        16"`."""
        grids = [level for level in self.levels if level.downsampling_factor is not None]
        if len(grids) == 1 and grids[0].downsampling_factor == self.image_multiple:
            return f"the downsampling factor {self.image_multiple}"
        coarsest = max(grids, key=lambda level: level.downsampling_factor, default=None)
        if coarsest is not None and coarsest.downsampling_factor == self.image_multiple:
            return f"the {coarsest.name} grid's downsampling factor {self.image_multiple}"
        return f"the tokenizer's image multiple {self.image_multiple}"

    def check_image_size(self, height: int, width: int) -> None:
        """Raises a `ValueError` naming the nearest valid size unless both sides are divisible by `image_multiple`."""
        if height % self.image_multiple or width % self.image_multiple:
            nearest = [self.nearest_image_size(side) for side in (height, width)]
            raise ValueError(
                f"Image height and width must be divisible by {self.image_multiple_text()}; got {height}x{width}. "
                f"Resize or crop to the nearest valid size, {nearest[0]}x{nearest[1]}."
            )

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

    def check(self, indices: Indices, image_size: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
        """Validates ids against the layout and returns them split into levels.

        Args:
            indices (`torch.LongTensor` or `tuple`):
                Ids of a batch of images, as `encode_to_indices` returns them.
            image_size (`(height, width)`, *optional*):
                The images' size: every level must then have the token shape it gives. Without it, the grid levels
                with a downsampling factor must agree on one size (fixed grids and sequences always have one
                shape).

        Raises `TypeError` for a non-integer tensor, `ValueError` for a wrong number of levels, a wrong shape,
        levels that do not belong to one batch of images of one size, or ids outside a level's codebook.
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
            level.check_ids(ids, where)
            if image_size is not None:
                expected = level.token_shape(*image_size)
                if tuple(ids.shape[1:]) != expected:
                    raise ValueError(
                        f"Token ids{where} of {image_size[0]}x{image_size[1]} images must have shape (batch, "
                        f"{', '.join(map(str, expected))}); got {tuple(ids.shape)}. Encode images of that size."
                    )
            found = level.image_size_of(ids.shape[1:])
            if found is not None:
                image_sizes.add(found)
        if len(image_sizes) > 1 or len({ids.shape[0] for ids in levels}) > 1:
            shapes = ", ".join(f"{level.name} {tuple(ids.shape)}" for level, ids in zip(self.levels, levels))
            rules = [level.shape_rule_text() for level in self.levels]
            raise ValueError(
                f"The levels' token ids do not belong to one batch of images of one size: {shapes} (levels "
                f"{rules}). Pass the levels of the same images."
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

    @property
    def codebook_names(self) -> list[str]:
        """The codebooks, in the order their first level appears: a level's own name unless levels share one."""
        return list(dict.fromkeys(level.codebook_name for level in self.levels))

    def codebook_counts(self, level_counts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level histograms (from [`count_codes`]) summed per codebook, in the order of `codebook_names`: the
        usage of a codebook that several levels share is measured over all of them."""
        totals: dict[str, torch.Tensor] = {}
        for level, counts in zip(self.levels, level_counts):
            name = level.codebook_name
            totals[name] = counts if name not in totals else totals[name] + counts
        return [totals[name] for name in self.codebook_names]

    # ------------------------------------------------------------------------------------------ one sequence

    @property
    def offsets(self) -> list[list[int]]:
        """`offsets[l][q]`: where the ids of level l, stage q start in the joint vocabulary (levels that share a
        codebook share its offsets)."""
        starts, start = {}, 0
        for level in self.levels:
            if level.codebook_name not in starts:
                starts[level.codebook_name] = start
                start += level.depth * level.codebook_size
        return [
            [starts[level.codebook_name] + q * level.codebook_size for q in range(level.depth)]
            for level in self.levels
        ]

    @property
    def vocabulary_size(self) -> int:
        """Size of the joint vocabulary of [`flatten`]: the sum over codebooks of `depth × K`."""
        first = {level.codebook_name: level for level in reversed(self.levels)}  # one level per codebook
        return sum(level.depth * level.codebook_size for level in first.values())

    def flatten(self, indices: Indices) -> torch.LongTensor:
        """Ids -> `(B, sequence_length)` in the joint vocabulary: levels coarse to fine, raster order, stages of a
        position together."""
        pieces = []
        for level, ids, offsets in zip(self.levels, self.split(indices), self.offsets):
            shift = torch.tensor(offsets, device=ids.device, dtype=torch.long)
            ids = ids.long().reshape(ids.shape[0], -1, level.depth) + shift  # (B, positions, depth)
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
            n = math.prod(shape)
            shift = torch.tensor(offsets, device=sequence.device, dtype=torch.long)
            ids = sequence[:, start : start + n].reshape(sequence.shape[0], -1, level.depth) - shift
            levels.append(ids.reshape(sequence.shape[0], *shape))
            start += n
        return self.join(levels)

    # ------------------------------------------------------------------------------------------ dict form

    def to_dict(self) -> dict[str, Any]:
        """`{"levels": [level dicts, coarse to fine], "image_multiple": m}` (see [`TokenLevel.to_dict`])."""
        return {"levels": [level.to_dict() for level in self.levels], "image_multiple": self.image_multiple}

    @classmethod
    def from_dict(cls, layout: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> TokenLayout:
        """The inverse of [`to_dict`]. Also reads a bare list of level dicts, the form that prior configs
        (`token_levels`), token sets and token files store (`image_multiple` then takes its default)."""
        if isinstance(layout, Mapping):
            unknown = sorted(set(layout) - {"levels", "image_multiple"})
            if unknown or "levels" not in layout:
                raise ValueError(
                    f"A token layout dict has keys `levels` and `image_multiple`; got keys {sorted(layout)}. Write it "
                    "with `TokenLayout.to_dict()`, or pass the list of level dicts."
                )
            return cls(tuple(TokenLevel.from_dict(level) for level in layout["levels"]), layout.get("image_multiple"))
        return cls(tuple(TokenLevel.from_dict(level) for level in layout))


__all__ = ["Indices", "TokenLayout", "TokenLevel"]
