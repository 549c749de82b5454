"""Configuration of the masked prior (MaskGIT, Chang et al. 2022, arXiv:2202.04200): a bidirectional Llama over an
hf-vq tokenizer's ids that fills in masked ids and samples a whole image in a few parallel steps.

The sequence and vocabulary are the autoregressive prior's ([`VQPriorConfig`]), with one more special token:

    [0, V)                      image ids, V = `layout.vocabulary_size`
    [V, V + num_classes)        one token per class
    V + num_classes             the null class (class dropout, the unconditional branch of guidance)
    V + num_classes + 1         [MASK]: an image id still to be predicted

It is the config of the `"masked"` prior family (`hf-vq train-prior --prior-type masked`).
"""

from __future__ import annotations

from typing import Literal

from huggingface_hub.dataclasses import strict

from .configuration_prior import VQPriorConfig


def _error(field: str, expected: str, received, fix: str) -> ValueError:
    return ValueError(f"`{field}` must be {expected}; got {received!r}. {fix}")


@strict(accept_kwargs=True)
class MaskedPriorConfig(VQPriorConfig):
    r"""
    A bidirectional Llama over the token ids of an hf-vq tokenizer, trained to predict masked ids (MaskGIT). Every
    field of [`VQPriorConfig`] (token layout, image size, classes, class dropout, positions, transformer sizes)
    means the same here; build it from the tokenizer with [`~VQPriorConfig.from_tokenizer`].

    Args:
        masking_schedule (`str`, *optional*, defaults to `"cosine"`):
            How many of a training image's N ids are masked: `"cosine"` draws r ~ U(0, 1) and masks ⌈cos(πr/2)·N⌉ ids
            (MaskGIT's choice, which trains mostly at high ratios, where sampling starts); `"linear"` masks ⌈(1-r)·N⌉.
            At least one id is always masked.
        label_smoothing (`float`, *optional*, defaults to 0.0):
            Label smoothing of the cross-entropy on the masked ids, spread over each position's own id range
            (MaskGIT used 0.1).
        held_out_mask_ratios (`list[float]`, *optional*, defaults to `[0.25, 0.5, 0.75, 1.0]`):
            The masking ratios of the held-out score: the masked-token cross-entropy averaged over these ratios, each
            masking the same positions of every image (drawn once from a fixed seed). It is not an NLL of the image.
        kwargs:
            The fields of [`VQPriorConfig`] and [`LlamaConfig`].

    Example:

    ```python
    >>> from hf_vq.modeling.configuration_masked_prior import MaskedPriorConfig
    >>> config = MaskedPriorConfig(
    ...     token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}], image_size=16,
    ...     num_classes=3, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    >>> config.vocab_size, config.null_class_token_id, config.mask_token_id
    (21, 19, 20)

    ```
    """

    model_type = "hf_vq_masked_prior"
    num_special_tokens = 2  # the null class, then [MASK]

    masking_schedule: Literal["cosine", "linear"] = "cosine"
    label_smoothing: float | int = 0.0
    held_out_mask_ratios: list | tuple = (0.25, 0.5, 0.75, 1.0)

    def __post_init__(self, **kwargs):
        self.held_out_mask_ratios = [float(r) for r in self.held_out_mask_ratios]
        super().__post_init__(**kwargs)

    @property
    def mask_token_id(self) -> int:
        """The [MASK] id, right after the null class."""
        return self.image_vocab_size + self.num_classes + 1

    def validate_prior_fields(self) -> None:
        super().validate_prior_fields()
        if self.masking_schedule not in ("cosine", "linear"):
            raise _error("masking_schedule", "'cosine' or 'linear'", self.masking_schedule, "Use 'cosine'.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise _error("label_smoothing", "a number in [0, 1)", self.label_smoothing, "Use e.g. 0.1, or 0 for none.")
        ratios = self.held_out_mask_ratios
        if not ratios or any(not 0.0 < r <= 1.0 for r in ratios):
            raise _error(
                "held_out_mask_ratios", "a non-empty list of ratios in (0, 1]", ratios, "Use [0.25, 0.5, 0.75, 1.0]."
            )


__all__ = ["MaskedPriorConfig"]
