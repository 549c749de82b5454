"""Arguments of `hf-vq train-prior`: the shared loop's groups (with defaults for a transformer) plus the token data
and the prior's size. Parsed by `arguments.parse_args` like `hf-vq train`'s (`--config FILE` included):
[`parse_prior_args`]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .arguments import Arguments, OptimizationArguments, OutputArguments, arg, check, flag_error, parse_args
from .prior_types import PRIOR_TYPES

PRIOR_DESCRIPTION = (
    "Train a class-conditional (or unconditional) transformer prior over a token set made by `hf-vq tokenize`. "
    "Writes a VQImagePipeline folder (tokenizer + prior) that `hf-vq generate` samples from."
)


@dataclass
class PriorOptimizationArguments(OptimizationArguments):
    """The loop's optimisation flags with a GPT's defaults (betas 0.9 / 0.95, larger batches) instead of a GAN's."""

    _argument_group_name = "optimisation"

    train_batch_size: int = arg(64, "Token sequences (images) per process and per forward pass.")
    learning_rate: float = arg(1e-3, "Peak learning rate of the prior, per total batch if --scale-lr.")
    adam_beta1: float = arg(0.9, "Adam beta1.")
    adam_beta2: float = arg(0.95, "Adam beta2 (0.95: the usual choice for GPT-style transformers).")
    adam_weight_decay: float = arg(0.0, "AdamW weight decay.")
    lr_warmup_steps: int = arg(50, "Optimizer steps of linear learning-rate warm-up.")


@dataclass
class PriorOutputArguments(OutputArguments):
    """The loop's output flags; the grid is of generated images and evaluation is the held-out NLL."""

    _argument_group_name = "checkpoints, logging, output"

    output_dir: str = arg("outputs/hf-vq-prior", "Folder for checkpoints, logs, samples and the final pipeline.")
    image_logging_steps: int = arg(100, "Save and log a grid of generated images every this many steps (0: never).")
    eval_steps: int = arg(100, "Measure the held-out NLL every this many steps (0: only at the end).")
    push_to_hub: bool = arg(
        False,
        "Upload the final pipeline folder (tokenizer + prior, card, samples) to the Hub in one commit. The token "
        "(`hf auth login` or HF_TOKEN) is checked before training starts.",
    )


@dataclass
class TokenDataArguments(Arguments):
    """Which token set, which tokenizer decodes it, what is held out."""

    _argument_group_name = "token data"

    tokens: str | None = arg(None, "Token set made by `hf-vq tokenize`: a folder or a Hub dataset id. Required.")
    tokenizer: str | None = arg(
        None, "Tokenizer (folder or Hub id) to decode samples with. Unset: the one recorded in tokens_info.json."
    )
    train_split: str = arg("train", "Split of the token set to train on.")
    eval_split: str | None = arg(None, "Held-out split for the NLL. Unset: `validation` or `test` when tokenized.")
    num_eval_examples: int = arg(2000, "Held-out sequences (original views only) in each NLL measurement.")
    use_flipped: bool = arg(True, "Train on the flipped views too, when the token set has them (`--flip`).")
    dataloader_num_workers: int = arg(0, "Data loader worker processes (the tokens are in memory: 0 is fastest).")

    def _validate(self) -> None:
        if self.tokens is None:
            raise ValueError("--tokens is required: a token set folder or Hub dataset id made by `hf-vq tokenize`.")
        check(self, ("num_eval_examples",), "an integer >= 1", lambda v: v >= 1)
        check(self, ("dataloader_num_workers",), "an integer >= 0", lambda v: v >= 0)


@dataclass
class PriorModelArguments(Arguments):
    """The prior: a family (`--prior-type`) sized here, or a saved one to continue from."""

    _argument_group_name = "prior"

    prior_type: str = arg(
        "causal",
        "Prior family to train from scratch: `causal`, an autoregressive Llama decoder that samples one token per "
        "forward, or `masked`, a bidirectional MaskGIT-style prior that decodes a whole grid in a few parallel "
        "steps and can edit images (any key of hf_vq.training.prior_types.PRIOR_TYPES). With --init-from, the "
        "family of the prior it loads.",
        choices=PRIOR_TYPES,  # the dict itself: argparse checks membership, so families registered later count
    )
    init_from: str | None = arg(
        None,
        "Fine-tune a saved prior instead: a prior folder, a pipeline folder (its transformer/) or a Hub id. Its "
        "tokenizer and image size must be the token set's. The token set's classes take the prior's class rows of "
        "the same name (id2label); the others are appended as new rows.",
    )
    reset_classes: bool = arg(
        False,
        "With --init-from: replace the prior's classes by a fresh table of the token set's classes (rows started "
        "from the null class) instead of matching them by name.",
    )
    hidden_size: int = arg(256, "Width of the transformer.")
    num_hidden_layers: int = arg(4, "Transformer blocks.")
    num_attention_heads: int = arg(4, "Attention heads (hidden_size must be divisible by it).")
    intermediate_size: int | None = arg(None, "Width of the SwiGLU MLP. Unset: 3 x hidden_size.")
    position_embedding: Literal["rope", "rope+2d", "rope2d"] = arg(
        "rope+2d",
        "`rope+2d`: Llama's 1-D rotary positions plus learned row + column embeddings, which measured 0.18 "
        "nats/token lower held-out NLL than `rope` alone on Fashion-MNIST (3 seeds, p = 0.02; "
        "benchmarks/results/prior_positions.md); `rope`: the rotary positions only; `rope2d`: LlamaGen's 2-D "
        "rotary positions (half of each head's pairs turn with the row, half with the column).",
    )
    class_dropout_prob: float = arg(0.1, "Probability of training on the null class (for classifier-free guidance).")
    unconditional: bool = arg(False, "Ignore the labels of the token set: an unconditional prior.")
    model_config: str | None = arg(
        None, "Other VQPriorConfig fields as inline JSON or a JSON file (e.g. '{\"rope_theta\": 1000}')."
    )
    sample_guidance_scale: float = arg(2.0, "Classifier-free guidance of the sample grids (1: none).")
    num_samples_per_class: int = arg(8, "Images per class in each sample grid (in total when unconditional).")

    def _validate(self) -> None:
        sizes = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        check(self, sizes, "an integer >= 1", lambda v: v >= 1)
        if self.prior_type not in PRIOR_TYPES:
            raise flag_error("prior_type", f"one of {list(PRIOR_TYPES)}", self.prior_type)
        check(self, ("num_samples_per_class",), "an integer >= 1", lambda v: v >= 1)
        check(self, ("sample_guidance_scale",), "a number >= 0", lambda v: v >= 0)
        if self.hidden_size % self.num_attention_heads:
            expected = f"a divisor of --hidden-size {self.hidden_size}"
            raise flag_error("num_attention_heads", expected, self.num_attention_heads)
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise flag_error("class_dropout_prob", "a probability in [0, 1)", self.class_dropout_prob)
        if self.reset_classes and self.init_from is None:
            raise ValueError(
                "--reset-classes replaces the class table of the prior given with --init-from; no --init-from was "
                "given. Add --init-from PRIOR, or leave --reset-classes out (a new prior gets the token set's "
                "classes)."
            )


@dataclass
class PriorArguments(PriorOutputArguments, PriorOptimizationArguments, TokenDataArguments, PriorModelArguments):
    """Everything `hf-vq train-prior` can be told. Run `hf-vq train-prior --help` for the same text, by group. (The
    prior's versions of the loop's two groups replace them: same flags, other defaults.)"""


def parse_prior_args(argv: list[str] | None = None) -> PriorArguments:
    """`hf-vq train-prior`'s arguments from `argv` (flags and an optional `--config FILE`; see
    `arguments.parse_args`).

    Args:
        argv (`list[str]`, *optional*):
            The flags; `None` reads `sys.argv[1:]`.
    """
    return parse_args(argv, PriorArguments, prog="hf-vq train-prior", description=PRIOR_DESCRIPTION)


__all__ = [
    "PRIOR_DESCRIPTION",
    "PriorArguments",
    "PriorModelArguments",
    "PriorOptimizationArguments",
    "PriorOutputArguments",
    "TokenDataArguments",
    "parse_prior_args",
]
