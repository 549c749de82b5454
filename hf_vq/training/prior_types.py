"""The prior families `hf-vq train-prior` knows (`--prior-type`).

Open: a new family trains with one entry, `PRIOR_TYPES["name"] = PriorType(config_class, model_class)`, registered
before the arguments are parsed. Its model implements the prior interface (`hf_vq.modeling.VQPriorMixin`), which is
all the trainer, the evaluation and `VQImagePipeline` call; its config follows `VQPriorConfig` (a subclass is the
short way), whose `from_tokenizer` the trainer calls with the size flags; and it registers its config with
`AutoConfig` and its model with `AutoModel`, so that a saved prior of the family loads by its `model_type`.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig, PreTrainedModel

from ..modeling import MaskedPriorConfig, VQPriorConfig, VQPriorForCausalLM, VQPriorForMaskedLM, VQPriorMixin


@dataclass(frozen=True)
class PriorType:
    """One `--prior-type`: how `hf-vq train-prior` builds a prior of that family.

    Args:
        config_class (`type[PretrainedConfig]`): the family's config class. A new prior is built with
            `config_class.from_tokenizer(tokenizer, image_size=..., num_classes=..., tokenizer_name_or_path=...,
            **fields)`, `fields` being the transformer's size flags (`hidden_size`, `num_hidden_layers`,
            `num_attention_heads`, `num_key_value_heads`, `intermediate_size`, `position_embedding`,
            `class_dropout_prob`), `id2label` and `--model-config`.
        model_class (`type[PreTrainedModel]`): the family's model class, a [`VQPriorMixin`]; also how a prior
            loaded with `--init-from` is recognised.
    """

    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]

    def __post_init__(self):
        if not (isinstance(self.model_class, type) and issubclass(self.model_class, VQPriorMixin)):
            raise TypeError(
                f"A prior family's model class must implement the prior interface; got {self.model_class!r}, not a "
                "subclass of hf_vq.modeling.VQPriorMixin. Inherit it and implement `training_inputs`, "
                "`score_input_ids` and `generate_indices`."
            )
        if getattr(self.model_class, "config_class", None) is not self.config_class:
            raise TypeError(
                f"{self.model_class.__name__}.config_class is {getattr(self.model_class, 'config_class', None)!r}, "
                f"not the family's config class {self.config_class.__name__}. Set `config_class = "
                f"{self.config_class.__name__}` on the model class."
            )


# `--prior-type` -> prior family. Open: register a new family with `PRIOR_TYPES["name"] = PriorType(...)`.
# Families are named by how they decode, not by their backbone: "causal" (one token per forward, left to right) and
# "masked" (MaskGIT's parallel decoding, which can also repaint regions) both run Llama layers, and LlamaGen's 2-D
# rotary positions are an option of the causal family, not a family of their own.
PRIOR_TYPES: dict[str, PriorType] = {
    "causal": PriorType(VQPriorConfig, VQPriorForCausalLM),
    "masked": PriorType(MaskedPriorConfig, VQPriorForMaskedLM),
}


def prior_type_of(model) -> str | None:
    """The `--prior-type` name of a prior model (its registered family), or None."""
    return next((name for name, entry in PRIOR_TYPES.items() if type(model) is entry.model_class), None)


__all__ = ["PRIOR_TYPES", "PriorType", "prior_type_of"]
