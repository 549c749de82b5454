"""Configuration of the autoregressive prior over an hf-vq tokenizer's ids (stage 2: image generation).

The prior is a Llama decoder (transformers' own, not a hand-written transformer) over one sequence per image:
a class token (or the null-class token) at position 0, then the image's ids in the order of the tokenizer's
[`TokenLayout.flatten`]. Its vocabulary is laid out as

    [0, V)                      image ids, V = `layout.vocabulary_size` (every level and stage of the tokenizer)
    [V, V + num_classes)        one token per class
    V + num_classes             the null class: class dropout in training, the unconditional branch of guidance,
                                and the only prefix of an unconditional prior

and `vocab_size` is derived from it, never set by hand. It is the config of the `"causal"` prior family; what the
rest of hf-vq reads from a prior's config (see `prior_interface.py`) lives here, so another family's config can
subclass it under its own `model_type`.
"""

from __future__ import annotations

from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig

from .configuration_utils import ModelTypeCheckMixin
from .token_layout import TokenLayout, TokenLevel
from .tokenizer_identity import tokenizer_config_hash, tokenizer_weights_hashes

POSITION_EMBEDDINGS = ("rope", "rope+2d", "rope2d")


def _error(field: str, expected: str, received: Any, fix: str) -> ValueError:
    return ValueError(f"`{field}` must be {expected}; got {received!r}. {fix}")


@strict(accept_kwargs=True)
class VQPriorConfig(ModelTypeCheckMixin, LlamaConfig):
    r"""
    A Llama decoder over the token ids of an hf-vq tokenizer, optionally class-conditional. Build it from the
    tokenizer with [`~VQPriorConfig.from_tokenizer`], which fills in the token layout, the image size and the
    tokenizer's name, config hash and weights digests (checked when sampling, so a prior never decodes with another
    tokenizer).

    Args:
        token_levels (`list[dict]`, *optional*):
            The tokenizer's [`TokenLayout`] levels, coarse to fine, in their dict form ([`TokenLevel.to_dict`]:
            `name`, one of `downsampling_factor` / `side` / `length`, `codebook_size`, `depth`, and `codebook` for
            levels sharing a codebook). Defaults to one grid of 1024 codes at f16.
        image_size (`int` or `list[int]`, *optional*, defaults to 256):
            Side (or `[height, width]`) in pixels of the images the prior generates; with `token_levels` it gives the
            token grids (`latent_shapes`) and the sequence length.
        num_classes (`int`, *optional*, defaults to 0):
            Number of classes of a class-conditional prior; 0 for an unconditional one.
        class_dropout_prob (`float`, *optional*, defaults to 0.1):
            Probability, in training, of replacing the class token with the null-class token, which teaches the
            unconditional model that classifier-free guidance needs (Ho & Salimans 2022, arXiv:2207.12598).
        position_embedding (`str`, *optional*, defaults to `"rope"`):
            `"rope"`: Llama's 1-D rotary embedding over the sequence; `"rope+2d"`: plus a learned row and a learned
            column embedding added to each image token (rows and columns in units of the finest grid); `"rope2d"`:
            LlamaGen's 2-D rotary embedding instead of the 1-D one (half of each head's rotary pairs turn with the
            row, half with the column; the class slot gets none, see `rope2d.py`). Both 2-D options need grid levels.
        tokenizer_name_or_path (`str`, *optional*):
            Where the tokenizer the prior was trained on lives (Hub id or folder); recorded for users and cards.
        tokenizer_config_hash (`str`, *optional*):
            [`tokenizer_config_hash`] of that tokenizer; sampling with another tokenizer raises a `ValueError`.
        tokenizer_weights_hash (`dict[str, str]`, *optional*):
            [`tokenizer_weights_hashes`] of that tokenizer (its encoder side and codebooks, per dtype): sampling with
            a tokenizer of the same config but other weights raises a `ValueError`; one whose decoder alone was
            fine-tuned passes. Unset in priors saved before hf-vq recorded it: then only the config is checked.
        vocab_size (`int`, *optional*):
            Derived: `V + num_classes + 1`. Leave it unset (it is checked when given, e.g. by `from_pretrained`).
        max_position_embeddings (`int`, *optional*):
            Defaults to the prefix plus the image tokens, `1 + sequence_length`.
        kwargs:
            The other [`LlamaConfig`] fields (`hidden_size`, `num_hidden_layers`, `num_attention_heads`, ...).

    Example:

    ```python
    >>> from hf_vq.modeling.configuration_prior import VQPriorConfig
    >>> config = VQPriorConfig(
    ...     token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}], image_size=16,
    ...     num_classes=3, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    >>> config.latent_shapes, config.sequence_length, config.vocab_size, config.null_class_token_id
    ([(4, 4)], 16, 20, 19)

    ```
    """

    model_type = "hf_vq_prior"
    # Tokens after the classes: the null class. A family with more (a masked prior's [MASK] id) raises it in its
    # config subclass, and `vocab_size` follows.
    num_special_tokens = 1

    token_levels: list | None = None
    image_size: int | list | tuple = 256
    num_classes: int = 0
    class_dropout_prob: float | int = 0.1
    position_embedding: Literal["rope", "rope+2d", "rope2d"] = "rope"
    tokenizer_name_or_path: str | None = None
    tokenizer_config_hash: str | None = None
    tokenizer_weights_hash: dict | None = None
    # Derived from the fields above (see `__post_init__`); Llama's text-model defaults would be wrong here.
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None  # no end token: every image has exactly `sequence_length` ids
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if self.token_levels is None:
            self.token_levels = [{"name": "tokens", "downsampling_factor": 16, "codebook_size": 1024, "depth": 1}]
        self.token_levels = [_level_dict(level) for level in self.token_levels]
        self.image_size = [self.image_size] * 2 if isinstance(self.image_size, int) else list(self.image_size)
        self.validate_prior_fields()
        special = self.num_special_tokens
        derived = self.image_vocab_size + self.num_classes + special
        if self.vocab_size is None:
            self.vocab_size = derived
        elif self.vocab_size != derived:
            raise _error(
                "vocab_size",
                f"image ids + classes + special tokens = {self.image_vocab_size} + {self.num_classes} + {special} = "
                f"{derived}",
                self.vocab_size,
                "Leave `vocab_size` unset: it is derived from `token_levels` and `num_classes`.",
            )
        if self.max_position_embeddings is None:
            self.max_position_embeddings = self.sequence_length + 1
        super().__post_init__(**kwargs)
        if self.max_position_embeddings < self.sequence_length + 1:
            raise _error(
                "max_position_embeddings",
                f">= 1 + sequence_length = {self.sequence_length + 1}",
                self.max_position_embeddings,
                "Leave it unset for the default.",
            )
        if self.eos_token_id is not None:
            raise _error(
                "eos_token_id", "None (images have a fixed number of ids)", self.eos_token_id, "Leave it unset."
            )

    @classmethod
    def from_tokenizer(
        cls, tokenizer, image_size: int | list[int] | None = None, num_classes: int = 0, **kwargs
    ) -> VQPriorConfig:
        """A prior config for `tokenizer` (any hf-vq model with a `token_layout`).

        Args:
            tokenizer (`VQPreTrainedModel`):
                The tokenizer whose ids the prior models.
            image_size (`int` or `list[int]`, *optional*, defaults to `tokenizer.config.sample_size`):
                Size of the generated images in pixels.
            num_classes (`int`, *optional*, defaults to 0):
                Number of classes; 0 for an unconditional prior.
            kwargs:
                Other fields of [`VQPriorConfig`] (transformer sizes, `id2label`, ...).
        """
        return cls(
            token_levels=tokenizer.token_layout.to_dict()["levels"],
            image_size=image_size if image_size is not None else tokenizer.config.sample_size,
            num_classes=num_classes,
            tokenizer_name_or_path=kwargs.pop("tokenizer_name_or_path", tokenizer.name_or_path or None),
            tokenizer_config_hash=tokenizer_config_hash(tokenizer),
            tokenizer_weights_hash=tokenizer_weights_hashes(tokenizer),
            **kwargs,
        )

    # ----------------------------------------------------------------------------------------- derived layout

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout.from_dict(self.token_levels)

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        """Shape of one image's ids per level: `(h, w)`, or `(h, w, depth)`."""
        return self.token_layout.token_shapes(*self.image_size)

    @property
    def sequence_length(self) -> int:
        """Image ids per image (the class token not counted)."""
        return self.token_layout.sequence_length(*self.image_size)

    @property
    def image_vocab_size(self) -> int:
        """V: image ids are `[0, V)` in the tokenizer layout's joint vocabulary."""
        return self.token_layout.vocabulary_size

    @property
    def null_class_token_id(self) -> int:
        return self.image_vocab_size + self.num_classes

    def class_token_id(self, label: int) -> int:
        return self.image_vocab_size + label

    @property
    def has_class_names(self) -> bool:
        """Whether `id2label` holds real class names (not transformers' default `LABEL_i`)."""
        names = self.id2label or {}
        return len(names) == self.num_classes > 0 and any(str(v) != f"LABEL_{k}" for k, v in names.items())

    def validate_prior_fields(self) -> None:
        try:
            layout = self.token_layout  # each level was checked by `_level_dict`; here, how they fit together
        except ValueError as error:
            raise _error("token_levels", "levels that form a TokenLayout", self.token_levels, str(error)) from None
        if len(self.image_size) != 2 or any(not isinstance(s, int) or s < 1 for s in self.image_size):
            raise _error("image_size", "a positive int or [height, width]", self.image_size, "Use e.g. 256.")
        if any(side % layout.image_multiple for side in self.image_size):
            raise _error(
                "image_size",
                f"divisible by every level's downsampling factor ({layout.image_multiple_text()})",
                self.image_size,
                f"Use a multiple of {layout.image_multiple}, e.g. {layout.nearest_image_size(self.image_size[0])}.",
            )
        flat = [level.name for level in layout.levels if not level.is_grid]
        if self.position_embedding in ("rope+2d", "rope2d") and flat:
            raise _error(
                "position_embedding",
                "'rope' for a tokenizer with 1-D token levels (rows and columns exist only in grids)",
                self.position_embedding,
                f"Levels {flat} are sequences; use position_embedding='rope'.",
            )
        head_dim = getattr(self, "head_dim", None) or self.hidden_size // self.num_attention_heads
        if self.position_embedding == "rope2d" and head_dim % 4:
            raise _error(
                "position_embedding",
                "used with a head size divisible by 4 when 'rope2d' (each head splits into row and column pairs)",
                f"rope2d with head_dim {head_dim}",
                "Change hidden_size or num_attention_heads, or use position_embedding='rope'.",
            )
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise _error("num_classes", "an integer >= 0 (0: unconditional)", self.num_classes, "Use e.g. 1000.")
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise _error("class_dropout_prob", "a probability in [0, 1)", self.class_dropout_prob, "Use e.g. 0.1.")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise _error("position_embedding", f"one of {POSITION_EMBEDDINGS}", self.position_embedding, "Use 'rope'.")


def _level_dict(level: Any) -> dict:
    """A level in its one dict form ([`TokenLevel.to_dict`]), from a dict or a `TokenLevel`."""
    try:
        return TokenLevel.from_dict(level).to_dict()
    except (TypeError, ValueError) as error:
        raise _error(
            "token_levels",
            "a list of token level dicts (see `TokenLevel.to_dict`)",
            level,
            f"{error} Build the config with `VQPriorConfig.from_tokenizer(tokenizer)`.",
        ) from None


__all__ = ["VQPriorConfig", "tokenizer_config_hash"]
