"""The quantizer interface every hf-vq quantizer implements, and the maths they share.

A quantizer maps encoder outputs `z` of shape (B, D, h, w) to codes of the same shape and token ids of shape
(B, h, w). It is a module called `quantize` on the model (diffusers' name), and it answers two call styles:

- `quantizer(z)` returns diffusers' tuple `(z_q, loss, (perplexity, None, indices))`, so pipelines written for
  `diffusers.VQModel` (aMUSEd's `vqvae.quantize(latents)[2][2]`, ...) run unchanged;
- `quantizer(z, return_dict=True)` returns a [`QuantizerOutput`] with every loss term and statistic named.

Codebook health (every quantizer): persistent buffers `usage_step` (training steps seen) and `code_last_used`
(K,) (the step each code was last chosen) are updated in train mode only, all-reduced across processes, and
give `running_usage` (fraction of codes used within the last `codebook_usage_window` steps) and `dead_codes`.

Distributed: statistics that change buffers are summed with `torch.distributed.all_reduce` and random choices
are broadcast from rank 0, checked at call time (`distributed_is_ready()`), so every rank keeps the same
codebook without DDP having to broadcast buffers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .modeling_outputs import QuantizerOutput

# ------------------------------------------------------------------------------------------------- distributed


def distributed_is_ready() -> bool:
    """Checked at every call, never cached: a model is often built before the process group exists."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sums `tensor` in place over all processes (a no-op in a single process)."""
    if distributed_is_ready():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def broadcast_from_main_(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrites `tensor` in place with rank 0's copy (a no-op in a single process)."""
    if distributed_is_ready():
        torch.distributed.broadcast(tensor, src=0)
    return tensor


# ------------------------------------------------------------------------------------------------- shared maths


def entropy_loss(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`H(p(code | z))` averaged over tokens minus `H(mean_z p(code | z))`, with `p = softmax(logits / T)`.

    Minimising it makes each token's assignment confident and the batch's assignments uniform over the codebook
    (MAGVIT-v2, https://arxiv.org/abs/2310.05737 eq. 5; LlamaGen's `compute_entropy_loss`). `logits`: (N, K).
    """
    scaled = logits / temperature
    probs = F.softmax(scaled, dim=-1)
    log_probs = F.log_softmax(scaled, dim=-1)
    sample_entropy = -(probs * log_probs).sum(dim=-1).mean()
    mean_probs = probs.mean(dim=0)
    codebook_entropy = -(mean_probs * torch.log(mean_probs.clamp_min(1e-10))).sum()
    return sample_entropy - codebook_entropy


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """The quantizer computes in fp32 whatever the model dtype: fp16 and bf16 tensors are cast up, fp64 ones (a
    model converted to float64 to check a conversion, say) keep their precision."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def project(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Applies an optional `nn.Linear` projection in the quantizer's precision (`at_least_fp32`)."""
    if isinstance(linear, nn.Linear):
        bias = at_least_fp32(linear.bias) if linear.bias is not None else None
        return F.linear(x, at_least_fp32(linear.weight), bias)
    return x


def flatten_latents(latents: torch.Tensor, project_in: nn.Module | None = None) -> torch.Tensor:
    """(B, D, h, w) latents -> (B*h*w, code_dim) vectors (`at_least_fp32`), through the optional input projection."""
    flat = at_least_fp32(latents).permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    return project(project_in, flat)


def channels_first(codes: torch.Tensor) -> torch.Tensor:
    """(B, h, w, D) -> contiguous (B, D, h, w).

    Contiguous, not the permuted (channels-last-strided) view: the convs after the quantizer then run the same
    kernels as taming's and diffusers' (which both end their quantizers with `.contiguous()`), instead of oneDNN's
    channels-last ones, whose different rounding compounds over the decoder. `BaseQuantizer.forward` hands
    channels-last latents back in channels-last.
    """
    return codes.permute(0, 3, 1, 2).contiguous()


def is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class BaseQuantizer(nn.Module):
    """What the models rely on. Subclasses implement `quantize_latents`, `indices_to_codes` and `reset_parameters`.

    `register_health_buffers` adds the codebook-health buffers; `reset_health` initialises them (call it from
    `reset_parameters`), `update_health` counts a training batch's ids, `health` reads them.
    """

    codebook_size: int
    embed_dim: int
    usage_window: int
    num_quantizers: int = 1  # ids per grid position (residual VQ stacks several)
    # Whether ids carry a last axis of `num_quantizers` stages, `(B, h, w, Q)`, even for Q = 1: a residual
    # quantizer's ids keep one rank whatever its depth, so `ids[..., 0]` is the coarse stage for every Q.
    stacks_stages: bool = False
    # Set by `freeze_codebook`: training then changes no code (no gradient, no EMA, no restart, no k-means), so the
    # ids keep their meaning; the health counters still run.
    codebook_frozen: bool = False

    def freeze_codebook(self) -> None:
        """Keeps every code as it is through training (`hf-vq train --freeze-codebook`): no gradient reaches the
        quantizer's parameters and its training-time updates of the codes (EMA, dead-code restarts, k-means) are
        skipped, so the ids a frozen encoder gives keep their meaning and a prior trained on them keeps working."""
        self.requires_grad_(False)
        self.codebook_frozen = True

    def register_health_buffers(self, codebook_size: int, usage_window: int) -> None:
        self.usage_window = usage_window
        self.register_buffer("usage_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("code_last_used", torch.zeros(codebook_size, dtype=torch.long))

    def reset_health(self) -> None:
        init.zeros_(self.usage_step)
        init.zeros_(self.code_last_used)

    @torch.no_grad()
    def update_health(self, indices: torch.Tensor) -> torch.Tensor:
        """Counts a training batch's ids over all processes and stamps the codes used. Returns the counts (K,)."""
        counts = torch.bincount(indices.reshape(-1), minlength=self.codebook_size).float()
        all_reduce_sum_(counts)
        self.usage_step += 1
        self.code_last_used.copy_(torch.where(counts > 0, self.usage_step, self.code_last_used))
        return counts

    def dead_code_mask(self, since: torch.Tensor | None = None) -> torch.Tensor:
        """Codes not used for `usage_window` training steps or more (a code never used counts from step 0).

        `since` (K,): a later step to count from instead where it is later (a restart gives a code a full window).
        """
        last = self.code_last_used if since is None else torch.maximum(self.code_last_used, since)
        return (self.usage_step - last) >= self.usage_window

    def health(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`running_usage` (fraction of codes used in the last min(window, steps) steps) and `dead_codes`."""
        recent = self.code_last_used > (self.usage_step - self.usage_window).clamp_min(0)
        return recent.float().mean(), self.dead_code_mask().sum()

    def quantize_latents(self, latents: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError

    def training_updates(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """State a training step updates after the search; the health counters unless a subclass does more."""
        self.update_health(indices)

    def output_with_statistics(
        self,
        quantized: torch.Tensor,
        indices: torch.Tensor,
        dtype: torch.dtype,
        flat: torch.Tensor,
        *,
        codebook_loss: torch.Tensor | None = None,
        commitment_loss: torch.Tensor | None = None,
        entropy_loss: torch.Tensor | None = None,
    ) -> QuantizerOutput:
        """The step's output: code statistics, the training-time updates (training only), and the loss terms
        (those not given are 0). `flat` are the (N, code_dim) vectors that were searched."""
        perplexity, usage = batch_code_statistics(indices, self.codebook_size)
        if self.training:
            self.training_updates(flat.detach(), indices)
        running_usage, dead_codes = self.health()
        zero = quantized.new_zeros((), dtype=torch.float32)
        codebook_loss = zero if codebook_loss is None else codebook_loss
        commitment_loss = zero if commitment_loss is None else commitment_loss
        entropy_loss = zero if entropy_loss is None else entropy_loss
        return QuantizerOutput(
            quantized=quantized.to(dtype),
            indices=indices,
            loss=codebook_loss + commitment_loss + entropy_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=perplexity,
            codebook_usage=usage,
            entropy_loss=entropy_loss,
            running_usage=running_usage,
            dead_codes=dead_codes,
        )

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Token ids (B, h, w) -> codes (B, D, h, w), without any gradient estimator."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Initialises every parameter and buffer; called by the model's `_init_weights` (also on the meta device)."""
        raise NotImplementedError

    def forward(self, latents: torch.Tensor, return_dict: bool = False):
        output = self.quantize_latents(latents)
        if is_channels_last(latents):  # hand the layout back: a channels-last model stays on that path
            output.quantized = output.quantized.contiguous(memory_format=torch.channels_last)
        if return_dict:
            return output
        return output.quantized, output.loss, (output.perplexity, None, output.indices)

    def get_codebook_entry(self, indices: torch.LongTensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """diffusers' lookup: ids of any layout plus the `(B, h, w, D)` shape to arrange them in -> (B, D, h, w)."""
        if shape is not None:
            indices = indices.reshape(shape[:-1])
        return self.indices_to_codes(indices)


def code_statistics(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity and fraction of the codebook used, from code histograms `counts` of shape `(..., K)`.

    Perplexity is `exp(H)` of the empirical code distribution of each histogram: between 1 (one code) and K (all
    codes equally often). The one place this maths lives: the quantizers report it per batch, `hf_vq.evaluation`
    over a whole dataset (and per level), training's monitoring over the held-out images.
    """
    probs = counts / counts.sum(dim=-1, keepdim=True).clamp_min(1)
    # 0 · log 0 = 0: the clamp only keeps log finite where p is 0
    entropy = -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(dim=-1)
    return entropy.exp(), (counts > 0).to(probs.dtype).mean(dim=-1)


def batch_code_statistics(indices: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[`code_statistics`] of one batch's ids (any shape, values in `[0, codebook_size)`)."""
    return code_statistics(torch.bincount(indices.reshape(-1), minlength=codebook_size).float())
