"""`hf-vq train-prior --init-from`: fine-tune a saved prior (a pipeline folder's `transformer/`, a prior folder or a
Hub id; a converted LlamaGen GPT is one) on a token set of the user's own images.

The prior is loaded in fp32 (AdamW keeps fp32 weights; `--mixed-precision` casts the forward), checked against the
token set, and its class table fitted to the token set's classes. The checks, before any data is read:

    family        the prior is of the `--prior-type` family (`PriorTask.check_family`)
    tokenizer     the prior's own `check_tokenizer` against the token set's tokenizer: token layout and config hash,
                  so the ids it learnt mean the same codes; the tokenizer stays frozen
    image size    the token set's images are the size the prior models (its sequence length and positions)

Class table. A prior's vocabulary is `[image ids | one row per class | special tokens, the null class first]`
(`VQPriorConfig`). The token set's classes are matched to the prior's by name ([`fit_class_table`]: `id2label`, case
and spacing ignored; a name also matches a single synonym of a comma-separated ImageNet name, "tench" in "tench,
Tinca tinca"); the others are appended as new rows, after the prior's classes and before the special tokens, so the
prior keeps every class it knew. `--reset-classes` gives a fresh table of the token set's classes only; an
unconditional run (no labels, or `--unconditional`) keeps no class rows. Every new row, in the input embedding and in
the output head, starts as a copy of the null class's row: a new class starts as the prior's unconditional model
(which class dropout trained; the mean of the class rows when the prior was trained without class dropout), and
its output logit as low as the null token's, which no target ever is. The mapping is a pure function of the two
name lists, so a resumed run rebuilds the same table before the checkpoint is loaded over it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.locations import looks_like_local_path
from ..loading import load_model
from ..modeling import VQPriorMixin

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassTable:
    """The class table a fine-tuned prior gets, and how the token set's labels map onto it.

    Args:
        names (`list[str]`): the prior's classes after fitting, in row order (its new `id2label`).
        sources (`list[int | None]`): for each of those rows, the prior's class row it keeps, or None for a new row.
        label_map (`list[int]`): for each class of the token set, its row in `names`.
    """

    names: list[str]
    sources: list[int | None]
    label_map: list[int]

    @property
    def num_new(self) -> int:
        return sum(source is None for source in self.sources)

    def map_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The token set's labels `(N,)` as rows of the fitted table."""
        return torch.as_tensor(self.label_map, dtype=torch.long)[labels.long()]


def class_names(config) -> list[str]:
    """A prior config's class names in row order (transformers' `LABEL_i` where `id2label` has none)."""
    names = config.id2label or {}
    return [str(names.get(i, f"LABEL_{i}")) for i in range(config.num_classes)]


def _normal(name: str) -> str:
    return " ".join(str(name).replace("_", " ").lower().split())


def fit_class_table(prior_names: list[str], user_names: list[str], reset: bool = False) -> ClassTable:
    """Matches the token set's classes (`user_names`) to the prior's (`prior_names`) by name; unmatched ones become
    new rows after the prior's. With `reset`, the table is the token set's classes alone, all new.

    A name matches a prior class whose whole name is the same (case, spacing and underscores ignored), else the one
    prior class that lists it among comma-separated synonyms (ImageNet's "tench, Tinca tinca"). Two token-set
    classes never share a row: a second class with the same match gets a new row.
    """
    if reset:
        return ClassTable(list(user_names), [None] * len(user_names), list(range(len(user_names))))
    whole = {}
    synonyms: dict[str, list[int]] = {}
    for row, name in enumerate(prior_names):
        whole.setdefault(_normal(name), row)
        for part in {_normal(p) for p in str(name).split(",") if p.strip()}:
            synonyms.setdefault(part, []).append(row)
    names, sources, label_map, taken = list(prior_names), list(range(len(prior_names))), [], set()
    for name in user_names:
        key = _normal(name)
        row = whole.get(key)
        if row is None and len(synonyms.get(key, [])) == 1:
            row = synonyms[key][0]
        if row is None or row in taken:
            row = len(names)
            names.append(str(name))
            sources.append(None)
        taken.add(row)
        label_map.append(row)
    return ClassTable(names, sources, label_map)


def _new_rows(weight: torch.Tensor, config, num_rows: int, mean_of_classes: bool) -> torch.Tensor:
    """`num_rows` copies of the null class's row of `weight` (or of the mean class row)."""
    start = config.image_vocab_size
    if mean_of_classes:
        seed = weight[start : start + config.num_classes].mean(dim=0)
    else:
        seed = weight[config.null_class_token_id]
    return seed[None].expand(num_rows, -1).clone()


def apply_class_table(prior: nn.Module, table: ClassTable) -> None:
    """Rebuilds the class rows of `prior`'s input embedding and output head (and its config's `num_classes`,
    `vocab_size`, `id2label`) for `table`, in place. Image-id rows and special-token rows are kept as they are."""
    config = prior.config
    image_rows, old_classes = config.image_vocab_size, config.num_classes
    special = slice(image_rows + old_classes, config.vocab_size)
    # A prior trained without class dropout never trained its null row: start new classes from the mean class.
    mean_of_classes = old_classes > 0 and not config.class_dropout_prob
    kept = torch.tensor([s for s in table.sources if s is not None], dtype=torch.long) + image_rows

    def rebuilt(weight: torch.Tensor) -> torch.Tensor:
        new = _new_rows(weight, config, len(table.sources), mean_of_classes)
        known = [i for i, s in enumerate(table.sources) if s is not None]
        new[known] = weight[kept]
        return torch.cat([weight[:image_rows], new, weight[special]])

    with torch.no_grad():
        embedding = prior.get_input_embeddings()
        tied = prior.get_output_embeddings() is not None and prior.get_output_embeddings().weight is embedding.weight
        new_embedding = nn.Embedding(
            image_rows + len(table.sources) + (config.vocab_size - special.start),
            embedding.embedding_dim,
            padding_idx=embedding.padding_idx,
            dtype=embedding.weight.dtype,
            device=embedding.weight.device,
        )
        new_embedding.weight.copy_(rebuilt(embedding.weight))
        prior.set_input_embeddings(new_embedding)
        head = prior.get_output_embeddings()
        if head is not None and not tied:
            if head.weight.shape[0] != config.vocab_size:
                raise ValueError(
                    f"The output head of the --init-from prior has {head.weight.shape[0]} rows; its vocabulary has "
                    f"{config.vocab_size} (image ids + classes + special tokens). Its class table cannot be fitted: "
                    "save the prior with a head over the whole vocabulary, or train without --init-from."
                )
            new_head = nn.Linear(
                head.in_features, new_embedding.num_embeddings, bias=head.bias is not None, device=head.weight.device
            ).to(head.weight.dtype)
            new_head.weight.copy_(rebuilt(head.weight))
            if head.bias is not None:
                new_head.bias.copy_(rebuilt(head.bias[:, None])[:, 0])
            prior.set_output_embeddings(new_head)
    config.num_classes = len(table.names)
    config.vocab_size = new_embedding.num_embeddings
    for module in (prior, getattr(prior, "model", None)):  # Llama keeps a copy of the size on both
        if module is not None and hasattr(module, "vocab_size"):
            module.vocab_size = config.vocab_size
    config.id2label = dict(enumerate(table.names))
    config.label2id = {name: i for i, name in enumerate(table.names)}
    if tied:
        prior.tie_weights()
    type(config).from_dict(config.to_dict())  # the config's own checks: vocab_size is derived from the classes


def load_prior_to_fine_tune(args, info: dict, tokenizer, check_family) -> tuple[VQPriorMixin, ClassTable | None]:
    """The `--init-from` prior, checked against the token set (`info`, its `tokens_info.json`) and its tokenizer,
    its class table fitted to the token set's classes (see the module docstring). Returns the prior (fp32, train
    mode) and the table (None for an unconditional run, whose prefix is always the null token).

    Args:
        args (`PriorArguments`): `init_from`, `tokens`, `unconditional`, `reset_classes` are read.
        info (`dict`): the token set's `tokens_info.json`.
        tokenizer: the token set's tokenizer, already checked against the token set's config hash.
        check_family (`Callable`): raises when the loaded prior is not of the `--prior-type` family.
    """
    folder = args.init_from
    sub = "transformer" if _is_pipeline(folder) else ""
    prior = load_model(folder, VQPriorMixin, flag="--init-from", subfolder=sub)
    check_family(prior)
    prior.check_tokenizer(tokenizer)
    if list(prior.config.image_size) != list(info["image_size"]):
        height, width = prior.config.image_size
        raise ValueError(
            f"The token set {args.tokens} holds ids of {info['image_size'][0]}x{info['image_size'][1]} images; the "
            f"prior of --init-from {folder} models {height}x{width} images. Tokenize at that size (`hf-vq tokenize "
            f"... --resolution {height}`), or train a new prior without --init-from."
        )
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in prior.parameters()):
        logger.info("--init-from %s: weights stored in lower precision, trained in fp32", folder)
        prior.float()
    num_classes = 0 if args.unconditional else int(info.get("num_classes") or 0)
    names = info.get("label_names") or [f"LABEL_{i}" for i in range(num_classes)]
    table = fit_class_table(
        class_names(prior.config), names[:num_classes], reset=args.reset_classes or not num_classes
    )
    if table.names != class_names(prior.config) or args.reset_classes:
        apply_class_table(prior, table)
        logger.info(
            "--init-from %s: %d of the token set's classes found among the prior's by name, %d new class rows; "
            "%d classes in all",
            folder,
            sum(table.sources[row] is not None for row in table.label_map),
            table.num_new,
            len(table.names),
        )
    return prior.train(), (table if num_classes else None)


def _is_pipeline(name: str) -> bool:
    """Whether `name` (a folder or a Hub id) is a pipeline, whose prior is in `transformer/`."""
    path = Path(name).expanduser()
    if path.exists() or looks_like_local_path(name):
        return (path / "model_index.json").is_file()
    from huggingface_hub import hf_hub_download

    try:  # one small file (from the cache when offline); a prior repo has none
        hf_hub_download(name, "model_index.json")
    except Exception:  # not found, offline without it in the cache, not a repo: load_model says which
        return False
    return True


__all__ = ["ClassTable", "apply_class_table", "class_names", "fit_class_table", "load_prior_to_fine_tune"]
