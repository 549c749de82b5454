"""An autoregressive prior over an hf-vq tokenizer's ids: transformers' Llama with a class prefix, image-only
targets, class dropout, optional 2-D position embeddings, and a sampler with batched classifier-free guidance.

Sequence of one image: `[class or null token, image id 0, ..., image id L-1]` (see [`VQPriorConfig`] for the
vocabulary). Causal-LM shifting makes the prefix a condition, never a target: the loss is cross-entropy over the L
image ids only.

It is the `"causal"` prior family: it implements the prior interface ([`VQPriorMixin`], `prior_interface.py`), which
is all that training, evaluation and `VQImagePipeline` call. LlamaGen's 2-D rotary positions belong here, as another
`position_embedding` (`"rope2d"`, `rope2d.py`); a family that decodes otherwise (MaskGIT's masked prior) is a new
model file of its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# diffusers records a pipeline component from a library it does not know by its module and, when loading, picks the
# load method by finding a known base class *in that module*: PreTrainedModel (see modeling_vqgan.py).
from transformers import LlamaForCausalLM, PreTrainedModel  # noqa: F401
from transformers.cache_utils import Cache, DynamicLayer
from transformers.generation import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_prior import VQPriorConfig
from .llama_prior import GridPositionEmbedding, LlamaPriorMixin
from .prior_interface import ClassLabels, VQPriorMixin
from .token_layout import Indices


class PreallocatedLayer(DynamicLayer):
    """A KV-cache layer for sampling a sequence of known length: its keys and values are written into buffers of
    `max_length` and returned as views of the filled part. transformers' `DynamicLayer` concatenates instead, which
    copies the whole cache at every token (measured: ~20% of the guided sampling time of a 16x16 grid on a CPU);
    `StaticLayer` avoids the copies but attends over all `max_length` positions at every token."""

    def __init__(self, max_length: int):
        super().__init__()
        self.max_length = max_length

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        batch, heads, _, key_dim = key_states.shape
        self.key_buffer = key_states.new_empty(batch, heads, self.max_length, key_dim)
        self.value_buffer = value_states.new_empty(batch, heads, self.max_length, value_states.shape[-1])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if end > self.max_length:
            raise ValueError(f"The cache holds {self.max_length} positions; position {end - 1} was written.")
        self.key_buffer[:, :, start:end] = key_states
        self.value_buffer[:, :, start:end] = value_states
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_max_length(self) -> int:
        return self.max_length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keeps the rows `indices` (as `DynamicLayer`), buffers included: guidance that stops mid-way (LlamaGen's
        `cfg_interval`) drops the null-class rows and runs half the batch from then on."""
        if self.is_initialized:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            end = self.get_seq_length()
            self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]


class VQPriorForCausalLM(LlamaPriorMixin, LlamaForCausalLM, VQPriorMixin):
    r"""
    A class-conditional (or unconditional) autoregressive prior over the ids of an hf-vq tokenizer: the `"causal"`
    prior family (see [`VQPriorMixin`] for the interface it implements).

    Train it with `model(input_ids=ids, labels=ids)` where `ids = model.build_input_ids(tokens, class_labels)`;
    sample token grids with [`generate_indices`] and decode them with the tokenizer's `decode_indices` (or use
    `hf_vq.pipelines.VQImagePipeline`). Its held-out score is the NLL per image token ([`held_out_score`]).

    Example:

    ```python
    >>> import torch
    >>> from hf_vq.modeling.configuration_prior import VQPriorConfig
    >>> from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
    >>> config = VQPriorConfig(
    ...     token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}], image_size=16,
    ...     num_classes=3, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    >>> prior = VQPriorForCausalLM(config)
    >>> ids = prior.build_input_ids(torch.randint(0, 16, (2, 4, 4)), class_labels=[0, 2])
    >>> prior(input_ids=ids, labels=ids).loss.shape
    torch.Size([])
    >>> prior.eval().generate_indices(class_labels=[1], num_images=2, guidance_scale=3.0,
    ...                               generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 4, 4])

    ```
    """

    config_class = VQPriorConfig
    config: VQPriorConfig
    held_out_metric = "nll"
    held_out_description = (
        "per image token, the softmax at each position taken over that position's id range (as in sampling; "
        "`hf-vq evaluate-prior` measures the same)"
    )
    model_card_name = "autoregressive Llama prior"
    model_card_tag = "autoregressive"

    def __init__(self, config: VQPriorConfig):
        super().__init__(config)
        self._init_position_modules()
        self.post_init()  # again: Llama's own post_init ran before the grid embedding existed

    # ----------------------------------------------------------------------------------------- layout tables

    def _blocked_ids(self, device: torch.device) -> torch.Tensor:
        """`(L, vocab_size)`: True where image position t may not hold an id (ids of other levels / stages, class
        and null tokens). Sampling and the held-out NLL both drop them."""
        tables = self._position_tables(device)
        vocabulary = torch.arange(self.config.vocab_size, device=device)
        return (vocabulary < tables["low"][:, None]) | (vocabulary >= tables["high"][:, None])

    # ----------------------------------------------------------------------------------------- training

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ):
        r"""
        [`LlamaForCausalLM.forward`] with class dropout and the 2-D position embeddings.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                `[class or null token, image ids...]` (see [`build_input_ids`]), or the next ids when `cache` holds
                the ones before.
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Usually `input_ids` itself: logits at position t are scored against `labels[:, t + 1]`, so the
                prefix is never a target and the loss covers the image ids only. In training mode with labels,
                the class token is replaced by the null token with probability `config.class_dropout_prob`.
        """
        past = cache.get_seq_length() if cache is not None else 0
        config = self.config
        training_step = labels is not None and self.training and input_ids is not None and past == 0
        if training_step and config.num_classes > 0 and config.class_dropout_prob > 0:
            drop = torch.rand(input_ids.shape[0], device=input_ids.device) < config.class_dropout_prob
            input_ids = input_ids.clone()
            input_ids[:, 0] = torch.where(drop, config.null_class_token_id, input_ids[:, 0])
        if self.grid_position_embedding is not None:
            if inputs_embeds is None:
                inputs_embeds, input_ids = self.model.embed_tokens(input_ids), None
            if position_ids is None:
                position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)[None] + past
            tables = self._position_tables(inputs_embeds.device)
            grid = self.grid_position_embedding(tables["rows"][position_ids], tables["cols"][position_ids])
            inputs_embeds = inputs_embeds + grid.to(inputs_embeds.dtype)
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def training_inputs(self, input_ids: torch.LongTensor) -> dict[str, torch.Tensor]:
        """`labels=input_ids`: cross-entropy over the image ids (see [`forward`]), class dropout included."""
        return {"input_ids": input_ids, "labels": input_ids}

    @torch.no_grad()
    def score_input_ids(self, input_ids: torch.LongTensor) -> tuple[float, int]:
        """The NLL of the image ids of `input_ids`, summed: at each position the softmax is taken over that
        position's id range, as in sampling (class, null and other-range ids are dropped)."""
        logits = self(input_ids=input_ids).logits[:, :-1].float()  # (B, L, V): position t predicts image id t
        log_p = F.log_softmax(logits.masked_fill(self._blocked_ids(logits.device), -math.inf), dim=-1)
        targets = input_ids[:, 1:]
        return -float(log_p.gather(2, targets[..., None]).sum()), targets.numel()

    def model_card_details(self) -> str:
        config = self.config
        return (
            f"{config.num_hidden_layers} layers, width {config.hidden_size}, positions `{config.position_embedding}`"
        )

    # ----------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def generate_indices(
        self,
        class_labels: ClassLabels | None = None,
        num_images: int = 1,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        cfg_interval: float | None = None,
        generator: torch.Generator | None = None,
        tokenizer=None,
    ) -> Indices:
        r"""
        Samples token grids, one token per forward, with a KV cache. Only image ids are ever emitted: at every
        step the logits of class tokens, the null token and (for layouts with several levels or stages) ids of
        other levels / stages are set to `-inf` before temperature, top-k and top-p.

        Args:
            class_labels (`int`, `list[int]` or `torch.LongTensor`, *optional*):
                Classes to sample; `num_images` images per entry. `None`: unconditional samples (for a
                class-conditional prior: samples conditioned on the null class).
            num_images (`int`, *optional*, defaults to 1):
                Images per class label (or in total, for unconditional samples).
            guidance_scale (`float`, *optional*, defaults to 1.0):
                Classifier-free guidance `s`: `log p_null + s (log p_class - log p_null)` (transformers'
                `guidance_scale` semantics). Both branches run as one batch of 2B rows; 1.0 skips the null branch.
            temperature (`float`, *optional*, defaults to 1.0):
                Softmax temperature; 0 for greedy decoding (argmax).
            top_k (`int`, *optional*):
                Sample among the `top_k` most likely ids only.
            top_p (`float`, *optional*):
                Nucleus sampling: the smallest set of ids whose probability reaches `top_p`.
            cfg_interval (`float`, *optional*):
                LlamaGen's guidance interval: guidance applies to image ids `0 .. cfg_interval + 1` only (LlamaGen
                counts the steps after the first id), then the null-class rows are dropped and sampling goes on from
                the class logits alone. `None` (or -1, LlamaGen's default): guidance at every id.
            generator (`torch.Generator`, *optional*):
                Random generator on the model's device, for reproducible samples (else the global RNG).
            tokenizer (`VQPreTrainedModel`, *optional*):
                Checked with [`check_tokenizer`] before sampling.

        Returns:
            Token ids in the tokenizer's layout: `(B, h, w)` for a single-grid tokenizer (`(B, h, w, depth)` for
            residual VQ, a tuple per level for a hierarchical one), B = `len(class_labels) * num_images`.
        """
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        config, device = self.config, self.device
        prefix = self._prefix_ids(class_labels, num_images, device)
        guided = float(guidance_scale) != 1.0
        if guided and (config.num_classes == 0 or class_labels is None):
            raise ValueError(
                f"`guidance_scale` = {guidance_scale} needs class labels and a class-conditional prior (guidance "
                "contrasts a class with the null class). Use guidance_scale=1.0 for unconditional samples."
            )
        if temperature < 0:
            raise ValueError(f"`temperature` must be >= 0 (0: greedy); got {temperature}.")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"`top_k` must be a positive integer or None; got {top_k!r}.")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"`top_p` must be in (0, 1] or None; got {top_p!r}.")
        if cfg_interval is not None and (isinstance(cfg_interval, bool) or not isinstance(cfg_interval, (int, float))):
            raise ValueError(
                f"`cfg_interval` must be a number (-1 or None: guidance throughout); got {cfg_interval!r}."
            )
        # LlamaGen stops guidance at decoding step i > cfg_interval, its step i producing image id i + 1.
        last_guided = length = config.sequence_length
        if guided and cfg_interval is not None and cfg_interval > -1:
            last_guided = math.floor(cfg_interval) + 1
        warpers = LogitsProcessorList()
        if temperature not in (0, 1):
            warpers.append(TemperatureLogitsWarper(float(temperature)))
        if top_k is not None:
            warpers.append(TopKLogitsWarper(top_k=top_k))
        if top_p is not None and top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=top_p))

        blocked = self._blocked_ids(device)  # (L, vocab)
        # (2B, 1): conditional rows, then null-class rows, run as one batch.
        inputs = torch.cat([prefix, torch.full_like(prefix, config.null_class_token_id)]) if guided else prefix
        inputs = inputs[:, None]
        sequence = torch.empty(len(prefix), 1 + length, dtype=torch.long, device=device)
        sequence[:, 0] = prefix
        cache = Cache(layers=[PreallocatedLayer(1 + length) for _ in range(config.num_hidden_layers)])
        for step in range(length):
            if guided and step > last_guided:  # guidance is over: drop the null-class rows, cache included
                guided, inputs = False, inputs[: len(prefix)]
                cache.batch_select_indices(torch.arange(len(prefix), device=device))
            output = self(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1)
            cache, logits = output.cache, output.logits[:, -1].float()  # (B or 2B, vocab)
            if guided:
                # On log-probabilities, as transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor.
                conditional, unconditional = F.log_softmax(logits, dim=-1).chunk(2)
                scores = guidance_scale * (conditional - unconditional) + unconditional
            else:
                scores = logits
            scores = scores.masked_fill(blocked[step], -float("inf"))
            if temperature == 0:
                tokens = scores.argmax(dim=-1)
            else:
                scores = warpers(sequence[:, : step + 1], scores)
                tokens = torch.multinomial(F.softmax(scores, dim=-1), 1, generator=generator).squeeze(1)
            sequence[:, step + 1] = tokens
            inputs = tokens.repeat(2)[:, None] if guided else tokens[:, None]
        return config.token_layout.unflatten(sequence[:, 1:], *config.image_size)


__all__ = ["GridPositionEmbedding", "PreallocatedLayer", "VQPriorForCausalLM"]
