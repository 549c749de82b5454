"""A masked prior over an hf-vq tokenizer's ids (MaskGIT, Chang et al. 2022, arXiv:2202.04200): transformers' Llama
layers with a bidirectional attention mask, trained to predict masked image ids, sampling a whole image in a few
parallel steps (`masked_decoding.py`) and repainting any region of an encoded image (`inpaint_indices`).

Sequence of one image: `[class or null token, image id or [MASK] 0, ..., L-1]` (see [`MaskedPriorConfig`]). The
output has one row of logits per image position, over the image ids `[0, V)` only: the head never proposes a class,
null or [MASK] token. It is the `"masked"` prior family: it implements the prior interface ([`VQPriorMixin`]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# diffusers finds a known base class (PreTrainedModel) in a component's module when loading a pipeline.
from transformers import LlamaModel, LlamaPreTrainedModel, PreTrainedModel  # noqa: F401
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_masked_prior import MaskedPriorConfig
from .llama_prior import LlamaPriorMixin
from .masked_decoding import (
    DECODING_ORDERS,
    GUIDANCE_SCHEDULES,
    decoding_step,
    guidance_at,
    halton_ranks,
    masking_fraction,
    num_left_masked,
)
from .prior_interface import ClassLabels, VQPriorMixin
from .token_layout import Indices


class VQPriorForMaskedLM(LlamaPriorMixin, LlamaPreTrainedModel, VQPriorMixin):
    r"""
    A class-conditional (or unconditional) masked prior over the ids of an hf-vq tokenizer: the `"masked"` prior
    family (see [`VQPriorMixin`]). Training masks a cosine-scheduled share of each image's ids and scores the
    masked ones ([`training_inputs`]); [`generate_indices`] decodes a grid in `num_inference_steps` forwards and
    [`inpaint_indices`] regenerates only the ids under a mask. Its held-out score is a masked-token cross-entropy,
    not an NLL of the image.

    Example:

    ```python
    >>> import torch
    >>> from hf_vq.modeling.configuration_masked_prior import MaskedPriorConfig
    >>> from hf_vq.modeling.modeling_masked_prior import VQPriorForMaskedLM
    >>> prior = VQPriorForMaskedLM(MaskedPriorConfig(
    ...     token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}], image_size=16,
    ...     num_classes=3, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4))
    >>> ids = prior.build_input_ids(torch.randint(0, 16, (2, 4, 4)), class_labels=[0, 2])
    >>> prior.training_loss(ids).shape
    torch.Size([])
    >>> grid = prior.eval().generate_indices(class_labels=[1], num_images=2, guidance_scale=3.0,
    ...                                      num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    >>> grid.shape
    torch.Size([2, 4, 4])
    >>> keep = torch.ones(2, 16, dtype=torch.bool)
    >>> keep[:, 5] = False  # regenerate position 5 only
    >>> edited = prior.inpaint_indices(grid, ~keep, class_labels=[1, 1], generator=torch.Generator().manual_seed(0))
    >>> bool((edited.flatten(1)[keep] == grid.flatten(1)[keep]).all())
    True

    ```
    """

    config_class = MaskedPriorConfig
    config: MaskedPriorConfig
    held_out_metric = "masked_token_ce"
    held_out_description = (
        "cross-entropy of masked image ids given the others and the class, per masked id, averaged over masking "
        "ratios (config.held_out_mask_ratios), the softmax over each position's id range; a masked prior's score, "
        "not an NLL of the image"
    )
    model_card_name = "masked (MaskGIT) Llama prior"
    model_card_tag = "maskgit"

    def __init__(self, config: MaskedPriorConfig):
        super().__init__(config)
        self.model = LlamaModel(config)
        for layer in self.model.layers:  # bidirectional, also for attention kernels that read the flag (flash)
            layer.self_attn.is_causal = False
        self.lm_head = nn.Linear(config.hidden_size, config.image_vocab_size, bias=False)
        self._init_position_modules()
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def _blocked_ids(self, device: torch.device) -> torch.Tensor:
        """`(L, V)`: True where image position t may not hold image id v (ids of other levels / stages)."""
        tables = self._position_tables(device)
        vocabulary = torch.arange(self.config.image_vocab_size, device=device)
        return (vocabulary < tables["low"][:, None]) | (vocabulary >= tables["high"][:, None])

    def _log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-softmax of `(B, L, V)` logits over each position's id range (other ids `-inf`)."""
        return F.log_softmax(logits.float().masked_fill(self._blocked_ids(logits.device), -math.inf), dim=-1)

    # ----------------------------------------------------------------------------------------- forward, training

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, 1 + L)`):
                `[class or null token, image ids with [MASK] (config.mask_token_id) where they are to be predicted]`.
            attention_mask (`torch.Tensor` of shape `(batch_size, 1 + L)`, *optional*):
                Padding mask (1: attend); images have no padding, so usually None.
            labels (`torch.LongTensor` of shape `(batch_size, 1 + L)`, *optional*):
                The true ids at the masked positions and -100 elsewhere (the prefix included), as
                [`training_inputs`] makes them. In training mode the class token is replaced by the null token with
                probability `config.class_dropout_prob`.

        Returns:
            [`MaskedLMOutput`]: `logits` of shape `(batch_size, L, V)`, over the image ids of every image position
            (the prefix has none), and `loss`, the cross-entropy on the masked positions (label-smoothed by
            `config.label_smoothing` over each position's id range), when `labels` are given.
        """
        config = self.config
        if labels is not None and self.training and config.num_classes > 0 and config.class_dropout_prob > 0:
            drop = torch.rand(input_ids.shape[0], device=input_ids.device) < config.class_dropout_prob
            input_ids = input_ids.clone()
            input_ids[:, 0] = torch.where(drop, config.null_class_token_id, input_ids[:, 0])
        if inputs_embeds is None:
            inputs_embeds = self.model.embed_tokens(input_ids)
        position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)[None]
        if self.grid_position_embedding is not None:
            tables = self._position_tables(inputs_embeds.device)
            grid = self.grid_position_embedding(tables["rows"][position_ids], tables["cols"][position_ids])
            inputs_embeds = inputs_embeds + grid.to(inputs_embeds.dtype)
        # Materialised (never None): LlamaModel would read None as "build the causal mask".
        mask = create_bidirectional_mask(config, inputs_embeds, attention_mask, allow_is_bidirectional_skip=False)
        hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids, **kwargs)
        logits = self.lm_head(hidden.last_hidden_state[:, 1:])  # (B, L, V): image positions only
        loss = None if labels is None else self._masked_loss(logits, labels[:, 1:])
        return MaskedLMOutput(loss=loss, logits=logits)

    def _masked_loss(self, logits: torch.Tensor, targets: torch.LongTensor) -> torch.Tensor:
        scored = targets != -100  # (B, L)
        blocked = self._blocked_ids(logits.device).expand(len(logits), -1, -1)[scored]  # (M, V)
        log_p = F.log_softmax(logits[scored].float().masked_fill(blocked, -math.inf), dim=-1)
        nll = -log_p.gather(1, targets[scored][:, None])[:, 0]
        smoothing = self.config.label_smoothing
        if smoothing:  # uniform over the position's own ids, not over ids it can never hold
            uniform = -log_p.masked_fill(blocked, 0.0).sum(-1) / (~blocked).sum(-1)
            nll = (1 - smoothing) * nll + smoothing * uniform
        return nll.mean()

    def mask_input_ids(
        self, input_ids: torch.LongTensor, generator: torch.Generator | None = None
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """A training batch: each row's ids masked at a ratio r ~ U(0, 1) through `config.masking_schedule`
        (⌈cos(πr/2)·L⌉ ids for "cosine", at least one), at random positions.

        Returns:
            `(masked_input_ids, labels)`, both `(B, 1 + L)`: labels hold the true ids where masked, -100 elsewhere.
        """
        batch, length = input_ids.shape[0], input_ids.shape[1] - 1
        device = input_ids.device
        ratio = torch.rand(batch, device=device, generator=generator)
        count = torch.ceil(masking_fraction(ratio, self.config.masking_schedule) * length).long().clamp(1, length)
        order = torch.rand(batch, length, device=device, generator=generator).argsort(dim=1).argsort(dim=1)
        masked = torch.cat([torch.zeros_like(order[:, :1], dtype=torch.bool), order < count[:, None]], dim=1)
        return input_ids.masked_fill(masked, self.config.mask_token_id), input_ids.masked_fill(~masked, -100)

    def training_inputs(self, input_ids: torch.LongTensor) -> dict[str, torch.Tensor]:
        """Masked inputs and their labels ([`mask_input_ids`], from the global RNG, which the training loop saves and
        restores): `forward(**inputs).loss` is the cross-entropy on the masked ids, class dropout included."""
        masked, labels = self.mask_input_ids(input_ids)
        return {"input_ids": masked, "labels": labels}

    @torch.no_grad()
    def score_input_ids(self, input_ids: torch.LongTensor) -> tuple[float, int]:
        """The masked-token cross-entropy of a batch, summed over `config.held_out_mask_ratios`: at ratio r, the
        ⌈r·L⌉ positions first in a permutation drawn from seed i (the i-th ratio) are masked in every row, so the
        score does not depend on batching."""
        length, total, count = input_ids.shape[1] - 1, 0.0, 0
        for i, ratio in enumerate(self.config.held_out_mask_ratios):
            positions = torch.randperm(length, generator=torch.Generator().manual_seed(i))[: math.ceil(ratio * length)]
            masked = torch.zeros(length + 1, dtype=torch.bool)
            masked[1 + positions] = True
            masked = masked.to(input_ids.device).expand_as(input_ids)
            log_p = self._log_probs(self(input_ids=input_ids.masked_fill(masked, self.config.mask_token_id)).logits)
            targets = input_ids[:, 1:]
            picked = log_p.gather(2, targets[..., None])[..., 0][masked[:, 1:]]
            total, count = total - float(picked.sum()), count + picked.numel()
        return total, count

    def model_card_details(self) -> str:
        config = self.config
        return (
            f"{config.num_hidden_layers} layers, width {config.hidden_size}, positions `{config.position_embedding}`, "
            "bidirectional attention"
        )

    # ----------------------------------------------------------------------------------------- sampling, editing

    @torch.no_grad()
    def generate_indices(
        self,
        class_labels: ClassLabels | None = None,
        num_images: int = 1,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 12,
        temperature: float = 1.0,
        top_k: int | None = None,
        choice_temperature: float = 4.5,
        decoding_order: str = "confidence",
        guidance_schedule: str = "constant",
        generator: torch.Generator | None = None,
        tokenizer=None,
    ) -> Indices:
        r"""
        Samples token grids in `num_inference_steps` parallel steps (see `masked_decoding.py`): all ids start
        masked; each step predicts every masked position, samples ids, keeps the most confident and masks the rest
        again on a cosine schedule. Only image ids of each position's level and stage are ever emitted.

        Args:
            class_labels (`int`, `list[int]` or `torch.LongTensor`, *optional*):
                Classes to sample; `num_images` images per entry. `None`: unconditional samples.
            num_images (`int`, *optional*, defaults to 1):
                Images per class label (or in total, for unconditional samples).
            guidance_scale (`float`, *optional*, defaults to 1.0):
                Classifier-free guidance `s` on log-probabilities, `log p_null + s (log p_class - log p_null)`; both
                branches run as one batch of 2B rows; 1.0 runs no null branch.
            num_inference_steps (`int`, *optional*, defaults to 12):
                Decoding steps (forwards; each of a 2B batch when guided), at most the number of ids.
            temperature (`float`, *optional*, defaults to 1.0):
                Softmax temperature of the sampled ids; 0 for the most likely id.
            top_k (`int`, *optional*):
                Sample among the `top_k` most likely ids of each position only.
            choice_temperature (`float`, *optional*, defaults to 4.5):
                τ: the Gumbel noise on the confidence is scaled by `τ · (1 − (t+1)/T)` (MaskGIT's annealing).
            decoding_order (`str`, *optional*, defaults to `"confidence"`):
                `"confidence"` (MaskGIT: keep the most confident ids) or `"halton"` (reveal positions in a fixed 2-D
                Halton order, Besnier et al. 2025; the ids are still sampled).
            guidance_schedule (`str`, *optional*, defaults to `"constant"`):
                `"constant"`, or `"linear"`: a ramp from no guidance at the first step to `guidance_scale` at the
                last.
            generator (`torch.Generator`, *optional*):
                Random generator on the model's device, for reproducible samples.
            tokenizer (`VQPreTrainedModel`, *optional*):
                Checked with [`check_tokenizer`] before sampling.

        Returns:
            Token ids in the tokenizer's layout (what its `decode_indices` takes), for `len(class_labels) *
            num_images` images.
        """
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        config = self.config
        prefix = self._prefix_ids(class_labels, num_images, self.device)
        ids = torch.full((len(prefix), config.sequence_length), config.mask_token_id, device=self.device)
        ids = self._decode(
            prefix,
            ids,
            ids == config.mask_token_id,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            temperature=temperature,
            top_k=top_k,
            choice_temperature=choice_temperature,
            decoding_order=decoding_order,
            guidance_schedule=guidance_schedule,
            generator=generator,
            labelled=class_labels is not None,
        )
        return config.token_layout.unflatten(ids, *config.image_size)

    @torch.no_grad()
    def inpaint_indices(
        self,
        indices: Indices,
        inpaint_mask: torch.Tensor,
        class_labels: ClassLabels | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        tokenizer=None,
        **sampling_options,
    ) -> Indices:
        r"""
        Regenerates the ids of `indices` where `inpaint_mask` is True and returns the others bit-identical: the
        decoding of [`generate_indices`] started from the given ids, with the schedule counted over each row's
        masked ids. Inpainting, outpainting (the ids of a larger canvas, masked outside the image) and class-guided
        editing are this one call.

        Args:
            indices (`torch.LongTensor` or `tuple`):
                Ids of B images in the tokenizer's layout (from its `encode_to_indices`), of `config.image_size`.
            inpaint_mask (`torch.BoolTensor` of shape `(B, L)`):
                True at the flattened positions to regenerate ([`tokens_under_mask`] makes it from a pixel mask).
            class_labels (`int`, `list[int]` or `torch.LongTensor`, *optional*):
                The class of each image (or one for all); required by a class-conditional prior (the null class is
                `None` for an unconditional one).
            guidance_scale, generator, tokenizer, sampling_options:
                As for [`generate_indices`] (its options: `num_inference_steps`, `temperature`, ...).

        Returns:
            The edited ids in the tokenizer's layout.
        """
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        self.check_sampling_options(sampling_options)
        config = self.config
        ids = config.token_layout.flatten(indices).to(self.device)
        if ids.shape[1] != config.sequence_length:
            raise ValueError(
                f"`indices` hold {ids.shape[1]} ids per image; this prior models {config.sequence_length} (images of "
                f"{config.image_size[0]}x{config.image_size[1]}). Encode images of that size."
            )
        labelled, batch = class_labels is not None, len(ids)
        if labelled:
            labels = torch.as_tensor(class_labels).reshape(-1)
            prefix = self._prefix_ids(labels.expand(batch) if labels.numel() == 1 else labels, 1, self.device)
            if len(prefix) != batch:
                raise ValueError(f"`class_labels` must hold one class, or one per image ({batch}); got {len(prefix)}.")
        else:  # the null class: an unconditional edit
            prefix = torch.full((batch,), config.null_class_token_id, dtype=torch.long, device=self.device)
        inpaint_mask = torch.as_tensor(inpaint_mask, device=self.device)
        if inpaint_mask.dtype != torch.bool or tuple(inpaint_mask.shape) != tuple(ids.shape):
            raise ValueError(
                f"`inpaint_mask` must be a boolean tensor of shape {tuple(ids.shape)} (one entry per image and "
                f"flattened position, True = regenerate); got {inpaint_mask.dtype} {tuple(inpaint_mask.shape)}. "
                "Make it from a pixel mask with `tokens_under_mask`."
            )
        options = {**self.sampling_options(), **sampling_options}
        ids = ids.masked_fill(inpaint_mask, config.mask_token_id)
        ids = self._decode(
            prefix, ids, inpaint_mask, guidance_scale=guidance_scale, generator=generator, labelled=labelled, **options
        )
        return config.token_layout.unflatten(ids, *config.image_size)

    def tokens_under_mask(self, pixel_mask: torch.Tensor) -> torch.BoolTensor:
        """`(B, L)` flattened positions whose image cell touches a True pixel of `pixel_mask` (`(B, H, W)` or
        `(B, 1, H, W)` at `config.image_size`): the mask dilated to every level's grid, all stages of a cell
        together; a 1-D (sequence) level has no cells, so any masked pixel regenerates all of it."""
        config, (height, width) = self.config, self.config.image_size
        mask = torch.as_tensor(pixel_mask, device=self.device)
        mask = mask[:, 0] if mask.dim() == 4 else mask
        if mask.dim() != 3 or tuple(mask.shape[1:]) != (height, width):
            raise ValueError(
                f"The pixel mask must be (B, {height}, {width}) (the prior's image size); got {tuple(mask.shape)}."
            )
        mask, pieces = mask.bool().float()[:, None], []
        for level in config.token_layout.levels:
            rows, cols = level.grid_shape(height, width) if level.is_grid else (1, 1)
            cells = F.adaptive_max_pool2d(mask, (rows, cols)) if level.is_grid else mask.amax((2, 3), keepdim=True)
            cells = cells.flatten(1).bool()
            if not level.is_grid:
                cells = cells.expand(-1, math.prod(level.grid_shape(height, width)))
            pieces.append(cells.repeat_interleave(level.depth, dim=1))
        return torch.cat(pieces, dim=1)

    def _decode(
        self,
        prefix: torch.LongTensor,
        ids: torch.LongTensor,
        masked: torch.BoolTensor,
        *,
        guidance_scale: float,
        num_inference_steps: int,
        temperature: float,
        top_k: int | None,
        choice_temperature: float,
        decoding_order: str,
        guidance_schedule: str,
        generator: torch.Generator | None,
        labelled: bool,
    ) -> torch.LongTensor:
        """The decoding loop over flattened `(B, L)` ids, masked where `masked`; returns them decoded."""
        config = self.config
        guided = float(guidance_scale) != 1.0
        self._check_sampling(
            guided, labelled, num_inference_steps, temperature, top_k, decoding_order, guidance_schedule
        )
        blocked = self._blocked_ids(ids.device)
        rank = None
        if decoding_order == "halton":
            layout, size = config.token_layout, config.image_size
            shapes = [
                lv.grid_shape(*size) if lv.is_grid else (1, math.prod(lv.grid_shape(*size))) for lv in layout.levels
            ]
            rank = halton_ranks(shapes, [level.depth for level in layout.levels]).to(ids.device)
        total = masked.sum(dim=1, keepdim=True)
        null = torch.full_like(prefix, config.null_class_token_id)
        for step in range(num_inference_steps):
            if not masked.any():
                break
            inputs = torch.cat([prefix[:, None], ids], dim=1)
            if guided:  # conditional rows, then null-class rows, as one batch
                inputs = torch.cat([inputs, torch.cat([null[:, None], ids], dim=1)])
            logits = self(input_ids=inputs).logits.float()  # (B or 2B, L, V)
            if guided:
                conditional, unconditional = F.log_softmax(logits, dim=-1).chunk(2)
                scale = guidance_at(step, num_inference_steps, guidance_scale, guidance_schedule)
                logits = unconditional + scale * (conditional - unconditional)
            logits = logits.masked_fill(blocked, -math.inf)
            if temperature == 0:
                logits = logits.masked_fill(logits < logits.amax(-1, keepdim=True), -math.inf)
            elif temperature != 1:
                logits = logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = logits.topk(top_k, dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            left = num_left_masked(step, num_inference_steps, total, masked.sum(dim=1, keepdim=True))
            annealed = choice_temperature * (1.0 - (step + 1) / num_inference_steps)
            ids, masked = decoding_step(
                logits.softmax(dim=-1),
                ids,
                masked,
                left,
                config.mask_token_id,
                choice_temperature=annealed,
                order_rank=rank,
                generator=generator,
            )
        return ids

    def _check_sampling(self, guided, labelled, steps, temperature, top_k, order, schedule) -> None:
        config = self.config
        if guided and (config.num_classes == 0 or not labelled):
            raise ValueError(
                "`guidance_scale` != 1 needs class labels and a class-conditional prior (guidance contrasts a class "
                "with the null class). Use guidance_scale=1.0 for unconditional samples."
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= config.sequence_length:
            raise ValueError(
                f"`num_inference_steps` must be an integer in [1, {config.sequence_length}] (the image's ids); got "
                f"{steps!r}. MaskGIT uses 8 to 12."
            )
        if temperature < 0:
            raise ValueError(f"`temperature` must be >= 0 (0: the most likely id); got {temperature}.")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"`top_k` must be a positive integer or None; got {top_k!r}.")
        if order not in DECODING_ORDERS:
            raise ValueError(f"`decoding_order` must be one of {DECODING_ORDERS}; got {order!r}.")
        if schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"`guidance_schedule` must be one of {GUIDANCE_SCHEDULES}; got {schedule!r}.")


__all__ = ["VQPriorForMaskedLM"]
