"""Nearest-code vector quantisation (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937) and the codebook
tricks that keep a large codebook alive, each an option of the config (see `BaseVQConfig`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .code_search import nearest_code
from .modeling_outputs import QuantizerOutput
from .quantizer_base import (
    BaseQuantizer,
    all_reduce_sum_,
    at_least_fp32,
    broadcast_from_main_,
    channels_first,
    entropy_loss,
    flatten_latents,
    project,
)


def rotate_onto(latents: torch.Tensor, codes: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The rotation trick (Fifty et al. 2024, https://arxiv.org/abs/2410.06424, eq. 4): `λ R z` with `R` the rotation
    taking `z`'s direction to `e`'s and `λ = ‖e‖ / ‖z‖`, both treated as constants. The value is `e` (up to
    rounding); the gradient reaching `z` is the decoder's gradient rotated back, so it keeps the angle between
    `z` and its code instead of being copied unchanged. Rows of (N, D)."""
    z_norm = latents.norm(dim=-1, keepdim=True).clamp_min(eps)
    e_norm = codes.norm(dim=-1, keepdim=True).clamp_min(eps)
    u = (latents / z_norm).detach()
    q = (codes / e_norm).detach()
    w = F.normalize(u + q, dim=-1, eps=eps).detach()
    # R z = z − 2 w wᵀz + 2 q uᵀz (Householder reflection through w, then reflection onto q)
    rotated = latents - 2 * (latents * w).sum(-1, keepdim=True) * w + 2 * (latents * u).sum(-1, keepdim=True) * q
    return (e_norm / z_norm).detach() * rotated


class VectorQuantizer(BaseQuantizer):
    """Replaces each D-dimensional latent vector by its nearest code in a learned (K, D) codebook.

    The gradient reaches the encoder through the straight-through estimator `z + sg[e − z]` (or the rotation trick).
    The loss has two named terms: `codebook = ‖sg[z] − e‖²` (moves codes) and `commitment = β‖z − sg[e]‖²` (keeps
    the encoder close to its codes). `beta_placement="codebook"` moves β to the codebook term, as in taming's and
    diffusers' legacy quantizer. Distances and argmin run in fp32 with autocast disabled: in bf16, nearby codes tie
    and ids flicker.

    Options (all off by default, see `BaseVQConfig` for the papers): EMA codebook, k-means init, dead-code restart,
    cosine codes, a low-dimensional codebook (`codebook_dim`) with linear projections `project_in` / `project_out`,
    an entropy term and the rotation trick. Buffers: `usage_step`, `code_last_used` (health, always);
    `ema_cluster_size`, `ema_embed_sum` (EMA); `kmeans_done` (k-means); `code_restarted_at` (restarts). All persist
    in the state dict.
    """

    def __init__(
        self,
        *,
        codebook_size: int,
        embed_dim: int,
        commitment_cost: float = 0.25,
        codebook_loss_weight: float = 1.0,
        beta_placement: str = "commitment",
        chunk_size: int = 8192,
        codebook_update: str = "loss",
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        codebook_dim: int | None = None,
        l2_norm: bool = False,
        usage_window: int = 100,
        dead_code_restart: bool = False,
        entropy_loss_weight: float = 0.0,
        entropy_temperature: float = 0.01,
        gradient_estimator: str = "straight_through",
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.embed_dim = embed_dim
        self.commitment_cost = commitment_cost
        self.codebook_loss_weight = codebook_loss_weight
        self.beta_placement = beta_placement
        self.chunk_size = chunk_size
        self.use_ema = codebook_update == "ema"
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.l2_norm = l2_norm
        self.dead_code_restart = dead_code_restart
        self.entropy_loss_weight = entropy_loss_weight
        self.entropy_temperature = entropy_temperature
        self.gradient_estimator = gradient_estimator

        code_dim = codebook_dim or embed_dim
        self.code_dim = code_dim
        self.embedding = nn.Embedding(codebook_size, code_dim)
        if codebook_dim is not None:
            # ViT-VQGAN §3.2: search in a low-dimensional space, so distances are less dominated by a few directions
            self.project_in = nn.Linear(embed_dim, code_dim)
            self.project_out = nn.Linear(code_dim, embed_dim)
        if self.use_ema:
            # van den Oord et al. 2017, appendix A.1: codes are EMA means of their assigned latents, not trained
            self.embedding.weight.requires_grad_(False)
            self.register_buffer("ema_cluster_size", torch.zeros(codebook_size))
            self.register_buffer("ema_embed_sum", torch.zeros(codebook_size, code_dim))
        if kmeans_init:
            self.register_buffer("kmeans_done", torch.zeros((), dtype=torch.long))
        if dead_code_restart:
            # the step each code was last re-seeded: a restarted code gets a full window to be chosen before it is
            # restarted again, but counts as used (in `running_usage`) only once it really is
            self.register_buffer("code_restarted_at", torch.zeros(codebook_size, dtype=torch.long))
        self.register_health_buffers(codebook_size, usage_window)

    def reset_parameters(self) -> None:
        # taming's initialisation: codes start in a small box around the origin.
        bound = 1.0 / self.codebook_size
        init.uniform_(self.embedding.weight, -bound, bound)
        if self.use_ema:
            # Filled from the codebook on the first EMA step (`usage_step == 0`), whatever initialised the weight.
            init.zeros_(self.ema_cluster_size)
            init.zeros_(self.ema_embed_sum)
        if self.kmeans_init:
            init.zeros_(self.kmeans_done)
        if self.dead_code_restart:
            init.zeros_(self.code_restarted_at)
        self.reset_health()

    # ------------------------------------------------------------------------------------------------- lookup

    def codebook(self) -> torch.Tensor:
        """The (K, code_dim) codes as the search sees them (`at_least_fp32`, l2-normalised if `l2_norm`)."""
        weight = at_least_fp32(self.embedding.weight)
        return F.normalize(weight, dim=-1) if self.l2_norm else weight

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        codes = F.embedding(indices, self.codebook())  # (B, h, w) -> (B, h, w, code_dim)
        codes = project(getattr(self, "project_out", None), codes)
        return channels_first(codes.to(self.embedding.weight.dtype))  # -> (B, D, h, w)

    # ------------------------------------------------------------------------------------------------- forward

    def quantize_latents(self, latents: torch.Tensor) -> QuantizerOutput:
        input_dtype = latents.dtype
        with torch.autocast(device_type=latents.device.type, enabled=False):
            batch, dim, height, width = latents.shape
            flat = flatten_latents(latents, getattr(self, "project_in", None))  # -> (N, code_dim)
            if self.l2_norm:
                flat = F.normalize(flat, dim=-1)
            if self.training and self.kmeans_init and not self.codebook_frozen and not bool(self.kmeans_done):
                self._kmeans_init(flat.detach())
            weight = at_least_fp32(self.embedding.weight)
            if self.training and (self.use_ema or self.dead_code_restart):
                # EMA and restarts write the codebook in place after this step's graph is built; the graph must
                # keep the values it was built from (the cast of an fp32 weight is the weight itself)
                weight = weight.clone()
            codebook = F.normalize(weight, dim=-1) if self.l2_norm else weight
            indices = nearest_code(flat.detach(), codebook.detach(), self.chunk_size)
            codes = F.embedding(indices, codebook)  # (N, code_dim)

            codebook_term = F.mse_loss(codes, flat.detach())
            commitment_term = F.mse_loss(flat, codes.detach())
            beta = self.commitment_cost
            codebook_loss = (
                self.codebook_loss_weight * (beta if self.beta_placement == "codebook" else 1.0) * codebook_term
            )
            if self.use_ema:
                codebook_loss = codebook_term.detach() * 0.0  # the codes move by EMA, not by this term
            commitment_loss = (beta if self.beta_placement == "commitment" else 1.0) * commitment_term
            if self.entropy_loss_weight > 0 and flat.requires_grad | codebook.requires_grad:
                # negative squared distances as logits (LlamaGen): ‖z‖² is constant per row, so drop it
                logits = 2 * flat @ codebook.t() - codebook.square().sum(-1)
                entropy = self.entropy_loss_weight * entropy_loss(logits, self.entropy_temperature)
            else:
                entropy = flat.new_zeros(())

            if latents.requires_grad:
                if self.gradient_estimator == "rotation":
                    estimated = rotate_onto(flat, codes.detach())
                else:
                    estimated = flat + (codes - flat).detach()  # straight-through estimator
                quantized = project(getattr(self, "project_out", None), estimated)
                quantized = channels_first(quantized.view(batch, height, width, dim))
            else:
                # inference: the codes exactly (the same lookup as `indices_to_codes`), so decoding ids and
                # decoding latents agree bit for bit
                quantized = at_least_fp32(self.indices_to_codes(indices.view(batch, height, width)))
            return self.output_with_statistics(
                quantized,
                indices.view(batch, height, width),
                input_dtype,
                flat,
                codebook_loss=codebook_loss,
                commitment_loss=commitment_loss,
                entropy_loss=entropy,
            )

    # ------------------------------------------------------------------------------------- training-time updates

    @torch.no_grad()
    def training_updates(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """Health counters, EMA codebook and dead-code restarts; every sum is over all processes."""
        first_step = self.usage_step == 0  # a tensor: no host sync, and no graph break under torch.compile
        counts = self.update_health(indices)
        if self.codebook_frozen:
            return
        if self.use_ema:
            self._ema_update(flat, indices.reshape(-1), counts, first_step)
        if self.dead_code_restart:
            self._restart_dead_codes(flat)

    def _ema_update(
        self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor, first_step: torch.Tensor
    ) -> None:
        # On the first step the averages start at the current codes with a count of one each, so a code that is
        # never chosen decays towards itself instead of towards zero. An in-place lerp by 0 or 1 (exact at both
        # ends) does it on the device, in one pass and without a (K, code_dim) temporary.
        start = first_step.to(self.ema_cluster_size.dtype)
        self.ema_cluster_size.lerp_(torch.ones_like(self.ema_cluster_size), start)
        self.ema_embed_sum.lerp_(self.codebook(), start)
        sums = torch.zeros_like(self.ema_embed_sum).index_add_(0, indices, flat)  # (K, code_dim)
        all_reduce_sum_(sums)
        decay = self.ema_decay
        self.ema_cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
        # Laplace smoothing (appendix A.1): no division by zero for codes whose count decayed away
        total = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + self.ema_epsilon) / (total + self.codebook_size * self.ema_epsilon) * total
        self.embedding.weight.copy_(self.ema_embed_sum / smoothed.unsqueeze(1))

    def _random_rows(self, flat: torch.Tensor, count: int) -> torch.Tensor:
        """`count` encoder outputs drawn on rank 0 (with replacement if the batch is smaller) and sent to all ranks."""
        picks = torch.randint(0, flat.shape[0], (count,), device=flat.device)
        rows = flat[picks].clone()
        return broadcast_from_main_(rows)

    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        # Jukebox §2.3 / SoundStream §3.2: a code unused for a whole window is moved onto a recent encoder output.
        dead = self.dead_code_mask(since=self.code_restarted_at)
        num_dead = int(dead.sum())  # identical on every rank: the counts behind it were all-reduced
        if num_dead == 0:
            return
        rows = self._random_rows(flat, num_dead)
        self.embedding.weight[dead] = rows.to(self.embedding.weight.dtype)
        self.code_restarted_at[dead] = self.usage_step
        if self.use_ema:
            self.ema_cluster_size[dead] = 1.0
            self.ema_embed_sum[dead] = rows

    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """Lloyd's k-means on the first training batch, run on rank 0 and broadcast (SoundStream §3.2)."""
        with torch.no_grad():
            centroids = self._random_rows(flat, self.codebook_size)
            # With fewer latents than codes some rows repeat; a little noise separates the copies.
            centroids = centroids + 0.01 * flat.std() * torch.randn_like(centroids)
            for _ in range(self.kmeans_iters):
                assign = nearest_code(
                    flat, F.normalize(centroids, dim=-1) if self.l2_norm else centroids, self.chunk_size
                )
                counts = torch.bincount(assign, minlength=self.codebook_size).float()
                sums = torch.zeros_like(centroids).index_add_(0, assign, flat)
                filled = counts > 0
                centroids[filled] = sums[filled] / counts[filled].unsqueeze(1)  # empty clusters keep their seed
            if self.l2_norm:
                centroids = F.normalize(centroids, dim=-1)
            broadcast_from_main_(centroids)
            self.embedding.weight.copy_(centroids.to(self.embedding.weight.dtype))
            self.kmeans_done.fill_(1)
