"""One level of a tokenizer's tokens ([`TokenLevel`]): the shape its ids take for an image size, its codebook, and
its dict form. [`TokenLayout`] (`token_layout.py`) puts the levels of a tokenizer together.

A level says which shape its ids take for an image size, by one of three rules:

- `downsampling_factor=f`: a grid of `(H / f, W / f)` (VQ-GAN, VQ-VAE; VQ-VAE-2's top and bottom grids);
- `side=s`: a grid of `(s, s)` whatever the image size (the scales of a VAR-style multi-scale tokenizer, where a
  13x13 scale of a 256-px image is no integer factor of it);
- `length=n`: a 1-D sequence of `n` tokens whatever the image size (TiTok-style tokenizers).

The dict form of a level (`TokenLevel.to_dict` / `from_dict`) is what config files, token sets and token files
store: `{"name", "downsampling_factor" | "side" | "length", "codebook_size", "depth"}`, plus `codebook` and
`stacked` when set, so that files written before `side`, `length` and `codebook` existed read unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import torch

_SHAPE_RULES = ("downsampling_factor", "side", "length")
_LEVEL_KEYS = ("name", *_SHAPE_RULES, "codebook_size", "depth", "codebook", "stacked")


@dataclass(frozen=True)
class TokenLevel:
    r"""
    One level of tokens: a grid, or a 1-D sequence. Give exactly one of `downsampling_factor`, `side` and `length`.

    Args:
        name (`str`):
            What the level is called in logs, cards and token files (`"tokens"` for a single grid; `"top"`,
            `"bottom"`).
        downsampling_factor (`int`, *optional*):
            A grid of `(height / f, width / f)` for images of `height` x `width`.
        codebook_size (`int`):
            K: ids of this level are in `[0, K)`.
        depth (`int`, *optional*, defaults to 1):
            Ids per position (the stages of a residual quantizer, coarse to fine), on a last axis of size `depth`.
        side (`int`, *optional*):
            A grid of `(side, side)` whatever the image size (one scale of a multi-scale tokenizer).
        length (`int`, *optional*):
            A 1-D sequence of `length` tokens whatever the image size.
        codebook (`str`, *optional*):
            Name of the codebook the level draws from: levels with the same name share one codebook and one id range
            of the joint vocabulary (they must agree on `codebook_size` and `depth`). Defaults to the level's own,
            named by `name`.
        stacked (`bool`, *optional*, defaults to `depth > 1`):
            Whether the ids carry the last stage axis. Always true for `depth > 1`; a residual quantizer with one
            stage sets it, so its ids keep the `(..., 1)` axis that its `encode_to_indices` returns.

    Example:

    ```python
    >>> from hf_vq.modeling.token_layout import TokenLevel
    >>> TokenLevel("tokens", downsampling_factor=16, codebook_size=1024).token_shape(256, 256)
    (16, 16)
    >>> TokenLevel("scale_13", side=13, codebook_size=4096, codebook="scales").token_shape(256, 256)
    (13, 13)
    >>> TokenLevel("tokens", length=32, codebook_size=4096).token_shape(512, 512)
    (32,)

    ```
    """

    name: str
    downsampling_factor: int | None = None
    codebook_size: int | None = None
    depth: int = 1
    _: KW_ONLY
    side: int | None = None
    length: int | None = None
    codebook: str | None = None
    stacked: bool = False

    def __post_init__(self):
        where = f"TokenLevel {self.name!r}"
        rules = [key for key in _SHAPE_RULES if getattr(self, key) is not None]
        if len(rules) != 1:
            raise ValueError(
                f"{where} must give exactly one of `downsampling_factor` (a grid of image side / f), `side` (a fixed "
                f"side x side grid) and `length` (a fixed 1-D sequence); got {rules or 'none'}. Give one of them."
            )
        for key in (rules[0], "codebook_size", "depth"):
            value = getattr(self, key)
            if not is_positive_int(value):
                raise ValueError(f"{where}: `{key}` must be an integer >= 1; got {value!r}. Set it from the model.")
        if self.depth > 1 and not self.stacked:
            object.__setattr__(self, "stacked", True)  # several stages always need their axis

    # ------------------------------------------------------------------------------------------ shapes

    @property
    def is_grid(self) -> bool:
        """Whether the level is 2-D (a grid), not a 1-D sequence."""
        return self.length is None

    @property
    def codebook_name(self) -> str:
        return self.codebook if self.codebook is not None else self.name

    @property
    def rank(self) -> int:
        """Dimensions of one image's ids: 2 for a grid, 1 for a sequence, plus the stage axis when stacked."""
        return (2 if self.is_grid else 1) + self.stacked

    def grid_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Positions of one image at this level, without the stage axis: `(h, w)`, or `(length,)`."""
        if self.downsampling_factor is not None:
            return height // self.downsampling_factor, width // self.downsampling_factor
        return (self.side, self.side) if self.side is not None else (self.length,)

    def token_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one image's ids at this level: `grid_shape`, plus `(depth,)` when stacked."""
        grid = self.grid_shape(height, width)
        return (*grid, self.depth) if self.stacked else grid

    def image_size_of(self, shape: Sequence[int]) -> tuple[int, int] | None:
        """The image size that one image's ids of `shape` come from, or None when the level cannot tell."""
        if self.downsampling_factor is None:
            return None
        return shape[0] * self.downsampling_factor, shape[1] * self.downsampling_factor

    @property
    def layout_text(self) -> str:
        """The shape of a batch of ids in words: `"batch, height, width"`, `"batch, 13, 13, 4"`, `"batch, 32"`."""
        if self.downsampling_factor is not None:
            positions = "height, width"
        elif self.side is not None:
            positions = f"{self.side}, {self.side}"
        else:
            positions = str(self.length)
        return f"batch, {positions}" + (f", {self.depth}" if self.stacked else "")

    def shape_rule_text(self) -> str:
        """The level's shape rule in words, for messages and model cards: `f16`, `13×13`, `32 tokens`."""
        if self.downsampling_factor is not None:
            return f"f{self.downsampling_factor}"
        return f"{self.side}×{self.side}" if self.side is not None else f"{self.length} tokens"

    def check_ids(self, ids: Any, where: str = "") -> None:
        """Type, shape (without the batch size) and id range of this level's ids (a batch); `where` names the level
        in messages."""
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex():
            received = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise TypeError(
                f"Token ids{where} must be an integer tensor of shape ({self.layout_text}); got {received}. "
                "Use `.long()`."
            )
        fixed = None if self.downsampling_factor is not None else self.token_shape(0, 0)
        wrong_stages = self.stacked and ids.dim() == 1 + self.rank and ids.shape[-1] != self.depth
        if ids.dim() != 1 + self.rank or wrong_stages or (fixed is not None and tuple(ids.shape[1:]) != fixed):
            hint = ""
            if self.downsampling_factor is not None:
                short = self.layout_text.replace("height", "h").replace("width", "w")
                hint = f" A flat sequence of h*w positions reshapes with `indices.view({short})`."
            raise ValueError(f"Token ids{where} must have shape ({self.layout_text}); got {tuple(ids.shape)}.{hint}")
        size = self.codebook_size
        if ids.numel() and (ids.min() < 0 or ids.max() >= size):
            raise ValueError(
                f"Token ids{where} must be in [0, {size}) for this codebook; got values in "
                f"[{int(ids.min())}, {int(ids.max())}]. Were they produced by a model with another codebook size?"
            )

    # ------------------------------------------------------------------------------------------ dict form

    def to_dict(self) -> dict[str, Any]:
        """The level as stored in config files, token sets and token files (see the module docstring)."""
        rule = next(key for key in _SHAPE_RULES if getattr(self, key) is not None)
        level = {
            "name": self.name,
            rule: getattr(self, rule),
            "codebook_size": self.codebook_size,
            "depth": self.depth,
        }
        if self.codebook is not None:
            level["codebook"] = self.codebook
        if self.stacked and self.depth == 1:
            level["stacked"] = True
        return level

    @classmethod
    def from_dict(cls, level: Mapping[str, Any] | TokenLevel) -> TokenLevel:
        """The inverse of [`to_dict`]; `name` defaults to `"tokens"` and `depth` to 1. A `TokenLevel` is returned
        as it is."""
        if isinstance(level, TokenLevel):
            return level
        if not isinstance(level, Mapping):
            raise TypeError(
                f"A token level must be a dict with keys {list(_LEVEL_KEYS)}; got {type(level).__name__}. Use "
                "`TokenLevel.to_dict()` (or `model.token_layout.to_dict()`) to write one."
            )
        unknown = sorted(set(level) - set(_LEVEL_KEYS))
        if unknown or "codebook_size" not in level:
            problem = f"unknown keys {unknown}" if unknown else "no `codebook_size`"
            raise ValueError(
                f"A token level is a dict with keys {list(_LEVEL_KEYS)} (`codebook_size` and one of "
                f"{list(_SHAPE_RULES)} required); got {dict(level)} ({problem}). Write it with `TokenLevel.to_dict()`."
            )
        return cls(**{"name": "tokens", **level})


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


__all__ = ["TokenLevel", "is_positive_int"]
