"""The interface of a prior family: what the trainer (`hf-vq train-prior`), the evaluation (`evaluate_prior`) and
`VQImagePipeline` call on a prior over an hf-vq tokenizer's ids, and nothing else.

A family is a model class that inherits [`VQPriorMixin`] and implements its three family methods:

    training_inputs(input_ids)       the keyword arguments of `forward` whose output's `loss` trains the prior
    score_input_ids(input_ids)       the held-out score of a batch, summed over the tokens it scores
    generate_indices(...)            token ids of new images, with the family's own sampling options as keywords

The mixin gives every family the rest: the model inputs built from tokenizer ids and class labels
(`build_input_ids`), the tokenizer check (`check_tokenizer`), the held-out score over a token set
(`held_out_score`, named by `held_out_metric` and explained by `held_out_description`: an autoregressive prior's is
its NLL, a masked prior's a masked-token cross-entropy, which is not an image NLL), and the list of sampling options
that `VQImagePipeline` and `hf-vq generate` pass through (`sampling_options`, read from `generate_indices`).

The config of a family ([`VQPriorConfig`] or a subclass) provides what these read: `token_layout`, `image_size`,
`latent_shapes`, `num_classes`, `image_vocab_size`, `null_class_token_id`, `id2label` / `has_class_names`,
`tokenizer_name_or_path`, `tokenizer_config_hash`, `tokenizer_weights_hash`, and `from_tokenizer(tokenizer,
image_size=..., num_classes=..., **fields)` to build a new one.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .token_layout import Indices
from .tokenizer_identity import tokenizer_config_hash, tokenizer_name, weights_hash_differs

logger = logging.getLogger(__name__)

ClassLabels = int | Sequence[int] | torch.Tensor

# The arguments of `generate_indices` that every family takes; its other keywords are the family's sampling options.
COMMON_SAMPLING_ARGUMENTS = ("class_labels", "num_images", "guidance_scale", "generator", "tokenizer")


class VQPriorMixin:
    r"""
    The interface every prior family implements (see the module docstring); mixed into a `PreTrainedModel` whose
    config follows [`VQPriorConfig`]'s vocabulary: image ids `[0, V)`, one token per class, then the null class.

    Class attributes:
        held_out_metric (`str`): the short name of [`held_out_score`] (`"nll"` for a held-out NLL); only a score
            named `"nll"` is set beside the token baselines' NLL by `evaluate_prior`.
        held_out_description (`str`): one sentence saying what the score measures, for cards and reports.
        model_card_name (`str`): what the family is called on a card ("autoregressive Llama prior").
        model_card_tag (`str`, *optional*): a Hub tag of the family.

    Example (the autoregressive family):

    ```python
    >>> import torch
    >>> from hf_vq.modeling.configuration_prior import VQPriorConfig
    >>> from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
    >>> prior = VQPriorForCausalLM(VQPriorConfig(
    ...     token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}], image_size=16,
    ...     num_classes=3, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4))
    >>> prior.held_out_metric, prior.sampling_options()
    ('nll', {'temperature': 1.0, 'top_k': None, 'top_p': None, 'cfg_interval': None})
    >>> ids = prior.build_input_ids(torch.randint(0, 16, (2, 4, 4)), class_labels=[0, 2])  # (2, 1 + 16)
    >>> prior.training_loss(ids).shape
    torch.Size([])
    >>> sorted(prior.held_out_score(ids[:, 1:], labels=[0, 2]))
    ['bits_per_token', 'nats_per_token', 'num_tokens']

    ```
    """

    held_out_metric: str = "nll"
    held_out_description: str = "held-out negative log-likelihood per image token"
    model_card_name: str = "prior"
    model_card_tag: str | None = None

    # ----------------------------------------------------------------------------------------- what a family does

    def training_inputs(self, input_ids: torch.LongTensor) -> dict[str, Any]:
        """The keyword arguments of `forward` for one training batch; `forward(**inputs).loss` is its loss. The
        trainer calls `forward` through the module Accelerate prepared (so gradients sync across processes).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Rows made by [`build_input_ids`], as the trainer stores them.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `training_inputs` (see VQPriorMixin).")

    def score_input_ids(self, input_ids: torch.LongTensor) -> tuple[float, int]:
        """The family's held-out score of one batch, in eval mode: `(total_nats, num_scored_tokens)`, so that
        [`held_out_score`] can average over batches of any size.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Rows made by [`build_input_ids`] from held-out ids.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `score_input_ids` (see VQPriorMixin).")

    def generate_indices(
        self,
        class_labels: ClassLabels | None = None,
        num_images: int = 1,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        tokenizer=None,
        **sampling_options: Any,
    ) -> Indices:
        r"""
        Samples the token ids of new images. Every family takes the arguments below; its own sampling options
        (an autoregressive prior's `temperature`, `top_k`, `top_p`; a masked prior's `num_inference_steps`) are
        further keyword arguments with defaults, listed by [`sampling_options`].

        Args:
            class_labels (`int`, `list[int]` or `torch.LongTensor`, *optional*):
                Classes to sample; `num_images` images per entry. `None`: unconditional samples.
            num_images (`int`, *optional*, defaults to 1):
                Images per class label (or in total, for unconditional samples).
            guidance_scale (`float`, *optional*, defaults to 1.0):
                Classifier-free guidance scale; 1.0 for none.
            generator (`torch.Generator`, *optional*):
                Random generator on the model's device, for reproducible samples.
            tokenizer (`VQPreTrainedModel`, *optional*):
                Checked with [`check_tokenizer`] before sampling.

        Returns:
            Token ids in the tokenizer's layout (what its `decode_indices` takes), for `len(class_labels) *
            num_images` images.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `generate_indices` (see VQPriorMixin).")

    # ----------------------------------------------------------------------------------------- given to every family

    def training_loss(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """The training loss of a batch of [`build_input_ids`] rows, through this module's own `forward`."""
        return self(**self.training_inputs(input_ids)).loss

    @torch.no_grad()
    def held_out_score(self, tokens, labels=None, batch_size: int = 64) -> dict[str, float]:
        """The family's held-out score ([`held_out_metric`]) of a token set, per scored token. Runs in eval mode
        (no class dropout); the mode is restored after.

        Args:
            tokens (`torch.LongTensor` or array of shape `(N, L)`):
                Held-out ids, flattened in the layout's joint vocabulary (as `hf-vq tokenize` stores them).
            labels (`torch.LongTensor` or array of shape `(N,)`, *optional*):
                Their classes; required by a class-conditional prior, ignored by an unconditional one.
            batch_size (`int`, *optional*, defaults to 64):
                Sequences per forward pass.

        Returns:
            `dict`: `nats_per_token`, `bits_per_token` and `num_tokens` (the tokens scored).
        """
        config = self.config
        tokens = torch.as_tensor(tokens).long()
        if tokens.dim() != 2:
            raise ValueError(f"`tokens` must be a 2-D integer array (N, L); got shape {tuple(tokens.shape)}.")
        labels = None if labels is None or config.num_classes == 0 else torch.as_tensor(labels).long().reshape(-1)
        total, count, was_training = 0.0, 0, self.training
        self.eval()
        try:
            for start in range(0, len(tokens), batch_size):
                ids = tokens[start : start + batch_size].to(self.device)
                indices = config.token_layout.unflatten(ids, *config.image_size)
                batch_labels = None if labels is None else labels[start : start + batch_size]
                nats, scored = self.score_input_ids(self.build_input_ids(indices, batch_labels))
                total, count = total + nats, count + scored
        finally:
            self.train(was_training)
        nats = total / count
        return {"nats_per_token": nats, "bits_per_token": nats / math.log(2.0), "num_tokens": count}

    @classmethod
    def sampling_options(cls) -> dict[str, Any]:
        """The family's own sampling options and their defaults: the keywords of its `generate_indices` beyond
        `COMMON_SAMPLING_ARGUMENTS`, e.g. `{"temperature": 1.0, "top_k": None, "top_p": None}`."""
        parameters = inspect.signature(cls.generate_indices).parameters.values()
        return {
            p.name: p.default
            for p in parameters
            if p.name != "self"
            and p.name not in COMMON_SAMPLING_ARGUMENTS
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def check_sampling_options(self, options: Mapping[str, Any]) -> None:
        """Raises a `ValueError` naming the options this family takes when `options` holds another."""
        known = self.sampling_options()
        unknown = sorted(set(options) - set(known))
        if unknown:
            what = "is not a sampling option" if len(unknown) == 1 else "are not sampling options"
            article = "an" if self.model_card_name[:1].lower() in "aeiou" else "a"
            raise ValueError(
                f"{', '.join(map(repr, unknown))} {what} of {type(self).__name__} ({article} "
                f"{self.model_card_name}); its options are {', '.join(known) or 'none'}. Leave the others out for "
                "this prior."
            )

    def model_card_details(self) -> str:
        """A few words on the architecture after the class name on a card, e.g. "4 layers, width 256"."""
        return ""

    def build_input_ids(self, indices: Indices, class_labels: ClassLabels | None = None) -> torch.LongTensor:
        """Token ids from the tokenizer (`encode_to_indices`) -> `(B, 1 + L)` model inputs: the class token (the
        null token for an unconditional prior) followed by the ids in the layout's joint vocabulary.

        Args:
            indices (`torch.LongTensor` or `tuple`):
                Ids of B images of `config.image_size`, as the tokenizer returns them.
            class_labels (`int`, `list[int]` or `torch.LongTensor` of shape `(B,)`, *optional*):
                Class of each image; required by a class-conditional prior, refused by an unconditional one.
        """
        layout = self.config.token_layout
        levels = layout.check(indices)
        shapes = [tuple(ids.shape[1:]) for ids in levels]
        if shapes != [tuple(s) for s in self.config.latent_shapes]:
            raise ValueError(
                f"Token grids of shape {shapes} do not match this prior's {self.config.latent_shapes} (images of "
                f"{self.config.image_size[0]}x{self.config.image_size[1]}). Encode images of that size."
            )
        batch = levels[0].shape[0]
        if self.config.num_classes > 0 and class_labels is None:
            raise ValueError("This prior is class-conditional: pass `class_labels`, one per image.")
        prefix = self._prefix_ids(class_labels, batch if class_labels is None else 1, levels[0].device)
        if prefix.shape[0] != batch:
            raise ValueError(f"`class_labels` must have one entry per image ({batch}); got {prefix.shape[0]}.")
        return torch.cat([prefix[:, None], layout.flatten(indices)], dim=1)

    def _prefix_ids(self, class_labels: ClassLabels | None, num_images: int, device) -> torch.LongTensor:
        """Prefix token of each sequence, `(len(class_labels) * num_images,)`: class tokens, or null tokens."""
        config = self.config
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"`num_images` must be an integer >= 1; got {num_images!r}.")
        if class_labels is None:
            return torch.full((num_images,), config.null_class_token_id, dtype=torch.long, device=device)
        if config.num_classes == 0:
            raise ValueError(
                "`class_labels` were given to an unconditional prior (config.num_classes = 0). Pass "
                "`class_labels=None`, or train a prior with `num_classes` > 0."
            )
        labels = torch.as_tensor(class_labels, device=device)
        if labels.numel() == 0:
            raise ValueError("`class_labels` is empty: pass at least one class, or None for unconditional samples.")
        if labels.is_floating_point() or labels.is_complex() or labels.dim() > 1:
            raise ValueError(
                f"`class_labels` must be an int or a 1-D sequence of ints; got {tuple(labels.shape)} {labels.dtype}."
            )
        labels = labels.long().reshape(-1)
        if labels.min() < 0 or labels.max() >= config.num_classes:
            raise ValueError(
                f"`class_labels` must be in [0, {config.num_classes}) (config.num_classes); got values in "
                f"[{int(labels.min())}, {int(labels.max())}]."
            )
        return (labels + config.image_vocab_size).repeat_interleave(num_images)

    def check_tokenizer(self, tokenizer) -> None:
        """Raises a `ValueError` naming both tokenizers when `tokenizer` is not the one this prior models: another
        token layout, another config (`config.tokenizer_config_hash`), or the same config with other weights on the
        side that gives ids their meaning (`config.tokenizer_weights_hash`: the encoder side and the codebooks; see
        `tokenizer_identity.py`). A tokenizer whose decoder alone was fine-tuned passes. A prior saved before the
        weights were recorded checks the layout and config only, and says so once."""
        config = self.config
        trained_on = config.tokenizer_name_or_path or "its name was not recorded"
        theirs = getattr(tokenizer, "token_layout", None)
        if _shape_forms(theirs) != _shape_forms(config.token_layout):
            raise ValueError(
                f"The tokenizer's token layout (shape, codebook size, depth per level) is {_describe(theirs)}; this "
                f"prior was trained on {_describe(config.token_layout)}. Use the tokenizer it was trained with "
                f"({config.tokenizer_name_or_path or 'see config.tokenizer_name_or_path'})."
            )
        if config.tokenizer_config_hash is not None:
            received = tokenizer_config_hash(tokenizer)
            if received != config.tokenizer_config_hash:
                raise ValueError(
                    f"The tokenizer {tokenizer_name(tokenizer)} has config hash {received}; this prior was trained on "
                    f"the tokenizer {trained_on}, config hash {config.tokenizer_config_hash}. Its ids mean other "
                    "codes: load the tokenizer the prior was trained with."
                )
        recorded = config.tokenizer_weights_hash
        if not recorded:
            if not getattr(self, "_warned_unrecorded_weights", False):
                self._warned_unrecorded_weights = True
                logger.warning(
                    "This prior records its tokenizer's config but not its weights (saved by an older hf-vq): the "
                    "token layout and the config are checked, the encoder and codebook weights are not. Save it "
                    "again with the tokenizer it was trained on to record them."
                )
            return
        differs = weights_hash_differs(tokenizer, recorded)
        if differs is not None:
            raise ValueError(
                f"The tokenizer {tokenizer_name(tokenizer)} has the config of the tokenizer this prior was trained on "
                f"({trained_on}) but other encoder or codebook weights (digest {differs[0]}; recorded {differs[1]}): "
                "its ids mean other codes, as after a second training run or a retrained codebook. Load the "
                "tokenizer the prior was trained with; one whose decoder alone was fine-tuned (hf-vq train "
                "--init-from ... --freeze-encoder --freeze-codebook) keeps the ids and works."
            )


def _shape_forms(layout) -> list[dict] | None:
    """Each level's dict form without its name: what decides the ids (a name only names them)."""
    return None if layout is None else [{**level.to_dict(), "name": None} for level in layout.levels]


def _describe(layout) -> list[str] | None:
    """`["f4, 16 codes, depth 1"]`: the levels of a layout for messages."""
    if layout is None:
        return None
    return [f"{lv.shape_rule_text()}, {lv.codebook_size} codes, depth {lv.depth}" for lv in layout.levels]


__all__ = ["COMMON_SAMPLING_ARGUMENTS", "ClassLabels", "VQPriorMixin"]
