"""Evaluation of a prior over a tokenizer's ids (stage 2): held-out NLL, FID / KID of generated images, and
class-conditional accuracy, always beside two token baselines and the tokenizer's own reconstructions.

[`evaluate_prior`] measures five image sets the same way, against the same N held-out real images:

- **prior** samples at each guidance scale (`generate_indices`, decoded by the tokenizer);
- **unigram** baseline: every position sampled independently from the training ids' frequencies;
- **class-position marginal** baseline: every position sampled independently from its own per-class frequencies
  (the position marginal for unlabelled data). A prior that does not beat both has not learnt how tokens go
  together, only which tokens are common where;
- **reconstruction** (the ceiling): the held-out images' own ids, decoded. No prior over these ids can do better.

Conventions:

- **NLL** is in nats (and bits) per image token on held-out ids, the class position excluded. Every model is a
  distribution over valid sequences: at each position only the ids of that position's (level, stage) range count,
  as in sampling (the prior's softmax is taken over that range; its logits for class and null tokens are dropped).
  Baseline counts are smoothed by a Dirichlet prior of total mass `smoothing` per distribution, centred on the
  uniform distribution (unigram) or on the unigram (class-position marginal), so held-out ids unseen in training
  cost a finite amount. The prior is called through its family's interface (`hf_vq.modeling.VQPriorMixin`): its
  `held_out_score` is reported as `held_out_score` with the family's name for it, and set beside the baselines' NLL
  only when it is an NLL (an autoregressive prior's; a masked prior's masked-token cross-entropy is not).
- **FID / KID** follow `hf_vq.evaluation.fid`'s pinned Inception protocol on 8-bit images; the reference set is
  the first N held-out real images, generated sets have the same N and the same labels (so the same class balance).
  FID is biased upwards below 2,048 images: compare it only at equal N (KID is unbiased).
- **Class accuracy**: a small CNN ([`train_class_probe`]) trained on real training images classifies each
  generated image; accuracy is the fraction classified as the class it was generated for. Its accuracy on the real
  held-out images is reported beside it (the ceiling of this measure).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import to_uint8
from .class_probe import ClassProbe, train_class_probe
from .fid import InceptionFeatureExtractor
from .metrics import frechet_distance, kernel_inception_distance
from .reconstruction import KID_SUBSETS

logger = logging.getLogger(__name__)

UNIGRAM = "unigram"
MARGINAL = "class_position_marginal"
RECONSTRUCTION = "reconstruction"
REAL = "real"


def prior_row(guidance_scale: float) -> str:
    """Key of the prior's results at a guidance scale: `prior_guidance_1`, `prior_guidance_3`, `prior_guidance_1.5`."""
    return f"prior_guidance_{guidance_scale:g}"


def _as_long(values, name: str, dims: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values).long()
    if tensor.dim() != dims:
        raise ValueError(f"`{name}` must be a {dims}-D integer array; got shape {tuple(tensor.shape)}.")
    return tensor.cpu()


def position_id_ranges(layout, image_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """`(low, high)`, each `(L,)`: position t of a flattened sequence holds ids in `[low[t], high[t])` (the range of
    its level and residual stage in the layout's joint vocabulary)."""
    height, width = image_size
    zeros = [torch.zeros(1, *shape, dtype=torch.long) for shape in layout.token_shapes(height, width)]
    last = [torch.full_like(ids, level.codebook_size - 1) for ids, level in zip(zeros, layout.levels)]
    return layout.flatten(layout.join(zeros))[0], layout.flatten(layout.join(last))[0] + 1


def _bits(nats: float) -> float:
    return nats / math.log(2.0)


def _nll_dict(total_nats: float, num_tokens: int) -> dict[str, float]:
    nats = total_nats / num_tokens
    return {"nats_per_token": nats, "bits_per_token": _bits(nats), "num_tokens": num_tokens}


# ------------------------------------------------------------------------------------------------ baselines


@dataclass
class TokenBaselines:
    """The unigram and class-position marginal distributions over flattened ids, fitted by counting.

    Args:
        low (`torch.LongTensor` of shape `(L,)`): first id of each position's range (see [`position_id_ranges`]).
        width (`torch.LongTensor` of shape `(L,)`): size of each position's range.
        log_unigram (`torch.Tensor` of shape `(L, W)`): `log p(low[t] + j)` at position t, `-inf` for `j >= width[t]`.
        log_marginal (`torch.Tensor` of shape `(C, L, W)`): the same per class (C = 1 for unlabelled data).
    """

    low: torch.Tensor
    width: torch.Tensor
    log_unigram: torch.Tensor
    log_marginal: torch.Tensor

    @classmethod
    def fit(
        cls,
        tokens,
        labels=None,
        *,
        low: torch.Tensor,
        high: torch.Tensor,
        num_classes: int = 0,
        smoothing: float = 1.0,
    ) -> TokenBaselines:
        """Counts training ids `(N, L)` (flattened, joint vocabulary) with labels `(N,)` (None: unlabelled).

        `smoothing` is the total pseudo-count of each distribution: spread uniformly over a position's range for the
        unigram, and in proportion to the unigram for each (class, position) marginal. 0 gives the empirical
        frequencies (their NLL on the fitted data is the empirical entropy).
        """
        tokens = _as_long(tokens, "tokens", 2)
        if tokens.shape[1] != len(low):
            raise ValueError(f"`tokens` must have {len(low)} ids per row (the layout's); got {tokens.shape[1]}.")
        width = high - low
        local = tokens - low  # (N, L): id within the position's range
        if (local < 0).any() or (local >= width).any():
            raise ValueError("`tokens` hold ids outside their position's range: are they in the prior's layout?")
        classes = max(num_classes, 1)
        labels = torch.zeros(len(tokens), dtype=torch.long) if labels is None or num_classes == 0 else labels
        labels = _as_long(labels, "labels", 1)
        if len(labels) != len(tokens) or (labels < 0).any() or (labels >= classes).any():
            raise ValueError(f"`labels` must hold one class in [0, {classes}) per row of `tokens`.")
        span, length = int(width.max()), tokens.shape[1]
        positions = torch.arange(length).expand_as(local)
        # (C, L, W) counts of each (class, position, id within the range).
        flat = (labels[:, None] * length + positions) * span + local
        counts = torch.bincount(flat.reshape(-1), minlength=classes * length * span).double()
        counts = counts.view(classes, length, span)
        valid = torch.arange(span)[None] < width[:, None]  # (L, W)
        # The unigram over the joint vocabulary, restricted to each position's range.
        joint = torch.bincount(tokens.reshape(-1), minlength=int(high.max())).double()
        unigram = torch.zeros(length, span, dtype=torch.float64)
        index = (low[:, None] + torch.arange(span)[None]).clamp(max=len(joint) - 1)
        unigram = torch.where(valid, joint[index], unigram) + torch.where(valid, smoothing / width[:, None], 0.0)
        unigram = unigram / unigram.sum(dim=1, keepdim=True)
        marginal = counts + smoothing * unigram[None]
        marginal = marginal / marginal.sum(dim=2, keepdim=True).clamp_min(1e-300)
        marginal = torch.where(marginal.sum(dim=2, keepdim=True) > 0, marginal, unigram[None])  # no data, no smoothing
        return cls(low=low, width=width, log_unigram=unigram.log(), log_marginal=marginal.log())

    def _log_table(self, kind: str, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        """`(B, L, W)` log-probabilities of `kind` for a batch with `labels`."""
        if kind == UNIGRAM:
            return self.log_unigram[None].expand(batch, -1, -1)
        if kind != MARGINAL:
            raise ValueError(f"Unknown baseline {kind!r}; expected {UNIGRAM!r} or {MARGINAL!r}.")
        if labels is None or len(self.log_marginal) == 1:
            return self.log_marginal[torch.zeros(batch, dtype=torch.long)]
        return self.log_marginal[labels]

    def nll(self, kind: str, tokens, labels=None) -> dict[str, float]:
        """Mean NLL per token of held-out ids `(N, L)` under baseline `kind` (`"unigram"` or
        `"class_position_marginal"`): `nats_per_token`, `bits_per_token`, `num_tokens`."""
        tokens = _as_long(tokens, "tokens", 2)
        labels = None if labels is None else _as_long(labels, "labels", 1)
        local = (tokens - self.low).clamp(min=0)[..., None]
        table = self._log_table(kind, labels, len(tokens))
        log_p = table.gather(2, local.clamp(max=table.shape[2] - 1))[..., 0]
        log_p = torch.where((tokens - self.low >= 0) & (tokens - self.low < self.width), log_p, -math.inf)
        return _nll_dict(float(-log_p.sum()), tokens.numel())

    def sample(self, kind: str, labels=None, num_samples: int | None = None, seed: int = 0) -> torch.Tensor:
        """Flattened ids `(B, L)`, every position drawn independently; B = `len(labels)` (or `num_samples`)."""
        labels = None if labels is None else _as_long(labels, "labels", 1)
        batch = len(labels) if labels is not None else int(num_samples or 1)
        table = self._log_table(kind, labels, batch).exp()  # (B, L, W)
        generator = torch.Generator().manual_seed(seed)
        local = torch.multinomial(table.reshape(-1, table.shape[2]).float(), 1, generator=generator)
        return local.view(batch, -1) + self.low


# ------------------------------------------------------------------------------------------------ the prior


def held_out_score(prior, tokens, labels=None, batch_size: int = 64) -> dict[str, Any]:
    """A prior's held-out score on flattened ids `(N, L)` (class labels `(N,)` for a conditional prior), through
    the prior interface ([`VQPriorMixin.held_out_score`]): `nats_per_token`, `bits_per_token`, `num_tokens`, plus
    `metric` and `description`, the family's name of the score and what it measures."""
    labels = None if labels is None else _as_long(labels, "labels", 1)
    score = prior.held_out_score(_as_long(tokens, "tokens", 2), labels, batch_size=batch_size)
    return {**score, "metric": prior.held_out_metric, "description": prior.held_out_description}


def prior_nll(prior, tokens, labels=None, batch_size: int = 64) -> dict[str, float]:
    """Held-out NLL of a prior whose held-out score is an NLL (`held_out_metric == "nll"`, as for the
    autoregressive `VQPriorForCausalLM`) on flattened ids `(N, L)` (class labels `(N,)` for a conditional prior),
    per image token, the class position excluded; the softmax at each position is taken over that position's id
    range (as in sampling). Runs in eval mode (no class dropout); the mode is restored after."""
    if prior.held_out_metric != "nll":
        raise ValueError(
            f"{type(prior).__name__}'s held-out score is {prior.held_out_metric!r} ({prior.held_out_description}), "
            "not an NLL of the images. Use `held_out_score(prior, ...)` for it."
        )
    labels = None if labels is None else _as_long(labels, "labels", 1)
    return prior.held_out_score(_as_long(tokens, "tokens", 2), labels, batch_size=batch_size)


@torch.no_grad()
def generate_tokens(
    prior,
    labels=None,
    num_images: int | None = None,
    *,
    guidance_scale: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    tokenizer=None,
    **sampling,
) -> torch.Tensor:
    """Flattened ids `(B, L)` sampled by the prior, one image per label (or `num_images` unconditional ones), in
    batches; `sampling` holds the family's own options of `generate_indices` (`prior.sampling_options()`)."""
    config = prior.config
    generator = torch.Generator(prior.device).manual_seed(seed)
    labels = None if labels is None else _as_long(labels, "labels", 1)
    total = len(labels) if labels is not None else int(num_images or 1)
    pieces = []
    for start in range(0, total, batch_size):
        count = min(batch_size, total - start)
        batch = None if labels is None else labels[start : start + count].tolist()
        indices = prior.generate_indices(
            class_labels=batch,
            num_images=1 if batch is not None else count,
            guidance_scale=guidance_scale,
            generator=generator,
            tokenizer=tokenizer,
            **sampling,
        )
        pieces.append(config.token_layout.flatten(indices).cpu())
    return torch.cat(pieces)


@torch.no_grad()
def decode_tokens(tokenizer, tokens, image_size: Sequence[int], batch_size: int = 64) -> torch.Tensor:
    """Flattened ids `(B, L)` -> 8-bit images `(B, C, H, W)` on the CPU, decoded by the tokenizer in eval mode."""
    tokens = _as_long(tokens, "tokens", 2)
    layout, images, was_training = tokenizer.token_layout, [], tokenizer.training
    tokenizer.eval()
    try:
        for batch in tokens.split(batch_size):
            indices = layout.unflatten(batch.to(tokenizer.device), *image_size)
            images.append(to_uint8(tokenizer.decode_indices(indices), tokenizer.config.pixel_range).cpu())
    finally:
        tokenizer.train(was_training)
    return torch.cat(images)


# ------------------------------------------------------------------------------------------------ all together


@torch.no_grad()
def _features(inception: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = next(iter(inception.parameters()), torch.empty(0)).device
    return torch.cat([inception(b.to(device)).cpu() for b in images.split(batch_size)])


def evaluate_prior(
    prior,
    tokenizer,
    *,
    train_tokens,
    held_out_tokens,
    held_out_images: torch.Tensor,
    train_labels=None,
    held_out_labels=None,
    class_probe: ClassProbe | None = None,
    guidance_scales: Sequence[float] = (1.0, 3.0),
    num_images: int | None = None,
    smoothing: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    inception: nn.Module | None = None,
    fid_network: str | None = None,
    **sampling_options: Any,
) -> dict[str, Any]:
    """Measures a prior against its baselines and its tokenizer's reconstructions (see the module docstring).

    Args:
        prior (`VQPriorMixin`): a prior of any family; `tokenizer` must be the one it was trained on (checked).
        train_tokens, train_labels: flattened training ids `(N, L)` (as `hf_vq.data.tokens.token_arrays` gives
            them) and their labels `(N,)` (None: unlabelled); the baselines are counted on them.
        held_out_tokens, held_out_labels: held-out ids `(M, L)` and labels, for NLL; row i must be the ids of
            `held_out_images[i]` (its reconstruction is decoded from them).
        held_out_images (`torch.Tensor` of dtype `uint8` and shape `(n, C, H, W)`): real held-out images at the
            prior's image size, prepared as they were for tokenizing: the FID reference and the probe's test set.
        class_probe (`ClassProbe`, *optional*): trained on real training images ([`train_class_probe`]); with
            labels, class accuracy is reported.
        guidance_scales (`Sequence[float]`, *optional*, defaults to `(1.0, 3.0)`): the prior is sampled at each
            (only 1.0 for an unconditional prior).
        num_images (`int`, *optional*): N of every image set; defaults to `len(held_out_images)`.
        smoothing (`float`, *optional*, defaults to 1.0): the baselines' pseudo-count (see [`TokenBaselines.fit`]).
        inception (`nn.Module`, *optional*): the FID feature extractor; defaults to the pinned Inception
            (`fid_network` picks its file, see `hf_vq.evaluation.fid`).
        sampling_options: the prior family's own sampling options (`prior.sampling_options()`: an autoregressive
            prior's `temperature`, `top_k`, `top_p`); the others keep the family's defaults.

    Returns:
        `dict` (JSON-serialisable): `rows`, keyed `prior_guidance_<s>`, `unigram`, `class_position_marginal`,
        `reconstruction`, `real`, each with `nll` (nats / bits per token, or None), `fid`, `kid`, `kid_std`,
        `class_accuracy` (None without probe or labels); `held_out_score`, the prior's own held-out score with its
        `metric` and `description` (only a score named `"nll"` is set beside the baselines' NLL: a masked prior's
        masked-token cross-entropy is not an NLL of the images); `num_images` (N), `num_nll_images`,
        `sequence_length`, `guidance_scales`, `sampling`, `probe` (its accuracy on the real held-out images),
        `protocol`, `seconds`.
    """
    started, seconds = time.perf_counter(), {}
    config = prior.config
    prior.check_tokenizer(tokenizer)
    prior.check_sampling_options(sampling_options)
    image_size = tuple(config.image_size)
    train_tokens = _as_long(train_tokens, "train_tokens", 2)
    held_out_tokens = _as_long(held_out_tokens, "held_out_tokens", 2)
    labelled = config.num_classes > 0 and held_out_labels is not None
    if config.num_classes > 0 and (train_labels is None or held_out_labels is None):
        raise ValueError("The prior is class-conditional: pass `train_labels` and `held_out_labels`.")
    held_out_labels = _as_long(held_out_labels, "held_out_labels", 1) if labelled else None
    n = min(num_images or len(held_out_images), len(held_out_images), len(held_out_tokens))
    if n < 2 or held_out_images.dtype != torch.uint8 or tuple(held_out_images.shape[-2:]) != image_size:
        raise ValueError(
            f"`held_out_images` must be >= 2 uint8 images (n, C, {image_size[0]}, {image_size[1]}) (the prior's image "
            f"size); got {held_out_images.dtype} {tuple(held_out_images.shape)} for N = {n}."
        )
    scales = [float(s) for s in guidance_scales] if config.num_classes > 0 else [1.0]
    labels = held_out_labels[:n] if labelled else None

    clock = time.perf_counter()
    low, high = position_id_ranges(config.token_layout, image_size)
    baselines = TokenBaselines.fit(
        train_tokens,
        train_labels if labelled else None,
        low=low,
        high=high,
        num_classes=config.num_classes if labelled else 0,
        smoothing=smoothing,
    )
    nll = {kind: baselines.nll(kind, held_out_tokens, held_out_labels) for kind in (UNIGRAM, MARGINAL)}
    seconds["baselines"] = time.perf_counter() - clock
    clock = time.perf_counter()
    score = held_out_score(prior, held_out_tokens, held_out_labels, batch_size)
    is_nll = score["metric"] == "nll"
    if is_nll:  # beside the baselines' NLL only when it is one
        nll["prior"] = {key: score[key] for key in ("nats_per_token", "bits_per_token", "num_tokens")}
    seconds["prior_nll" if is_nll else f"prior_{score['metric']}"] = time.perf_counter() - clock

    clock = time.perf_counter()
    sampling = {**prior.sampling_options(), **sampling_options}
    token_sets = {
        prior_row(s): generate_tokens(
            prior, labels, n, guidance_scale=s, batch_size=batch_size, seed=seed, tokenizer=tokenizer, **sampling
        )
        for s in scales
    }
    seconds["prior_sampling"] = time.perf_counter() - clock
    token_sets[UNIGRAM] = baselines.sample(UNIGRAM, labels, n, seed=seed)
    token_sets[MARGINAL] = baselines.sample(MARGINAL, labels, n, seed=seed + 1)
    token_sets[RECONSTRUCTION] = held_out_tokens[:n]
    clock = time.perf_counter()
    images = {name: decode_tokens(tokenizer, ids, image_size, batch_size) for name, ids in token_sets.items()}
    images[REAL] = held_out_images[:n]
    seconds["decoding"] = time.perf_counter() - clock

    clock = time.perf_counter()
    inception = inception if inception is not None else InceptionFeatureExtractor.from_source(fid_network)
    features = {name: _features(inception, batch, batch_size) for name, batch in images.items()}
    seconds["inception"] = time.perf_counter() - clock
    clock = time.perf_counter()
    kid_subset = max(2, min(1000, n // 2))
    rows: dict[str, dict[str, Any]] = {}
    for name, batch in images.items():
        row: dict[str, Any] = {"nll": None, "fid": None, "kid": None, "kid_std": None, "class_accuracy": None}
        if name != REAL:
            row["fid"] = frechet_distance(features[REAL], features[name])
            row["kid"], row["kid_std"] = kernel_inception_distance(
                features[REAL], features[name], subset_size=kid_subset, subsets=KID_SUBSETS, seed=seed
            )
        if class_probe is not None and labels is not None:
            row["class_accuracy"] = class_probe.accuracy(batch, labels)
        rows[name] = row
    seconds["fid_kid_accuracy"] = time.perf_counter() - clock
    if prior_row(1.0) in rows and is_nll:  # NLL is the unguided model's: guidance changes the samples, not the model
        rows[prior_row(1.0)]["nll"] = nll["prior"]
    rows[UNIGRAM]["nll"], rows[MARGINAL]["nll"] = nll[UNIGRAM], nll[MARGINAL]
    probe = None
    if class_probe is not None and labels is not None:
        count = min(len(held_out_images), len(held_out_labels))
        probe = {
            "real_held_out_accuracy": class_probe.accuracy(held_out_images[:count], held_out_labels[:count]),
            "num_real_held_out_images": count,
            "width": class_probe.width,
        }
    seconds["total"] = time.perf_counter() - started
    return {
        "rows": rows,
        "nll": nll,
        "held_out_score": score,
        "num_images": n,
        "num_nll_images": len(held_out_tokens),
        "num_train_token_images": len(train_tokens),
        "sequence_length": int(config.sequence_length),
        "image_size": list(image_size),
        "num_classes": int(config.num_classes),
        "guidance_scales": scales,
        "sampling": {**sampling, "seed": seed},
        "probe": probe,
        "protocol": {
            "nll": "nats (bits) per image token on held-out ids, class position excluded, softmax over each "
            "position's id range",
            "held_out_score": f"{score['metric']}: {score['description']}",
            "baseline_smoothing": smoothing,
            "fid": f"pinned Inception protocol (hf_vq.evaluation.fid), reference: the first {n} held-out real "
            f"images; every set has N = {n} and the same labels",
            "kid_subset_size": kid_subset,
            "kid_subsets": KID_SUBSETS,
        },
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
    }


__all__ = [
    "MARGINAL",
    "REAL",
    "RECONSTRUCTION",
    "UNIGRAM",
    "ClassProbe",
    "TokenBaselines",
    "decode_tokens",
    "evaluate_prior",
    "generate_tokens",
    "held_out_score",
    "position_id_ranges",
    "prior_nll",
    "prior_row",
    "train_class_probe",
]
