"""Nearest-code vector quantisation (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .code_search import nearest_code
from .quantizers import BaseQuantizer, QuantizerOutput, codebook_statistics


class VectorQuantizer(BaseQuantizer):
    """Replaces each D-dimensional latent vector by its nearest code in a learned (K, D) codebook.

    The gradient reaches the encoder through the straight-through estimator `z + sg[e − z]`. The loss has two named
    terms: `codebook = ‖sg[z] − e‖²` (moves codes) and `commitment = β‖z − sg[e]‖²` (keeps the encoder close to
    its codes). `beta_placement="codebook"` moves β to the codebook term, as in taming's and diffusers' legacy
    quantizer. Distances and argmin run in fp32 with autocast disabled: in bf16, nearby codes tie and ids flicker.
    """

    def __init__(
        self,
        *,
        num_embeddings: int,
        embed_dim: int,
        commitment_cost: float = 0.25,
        codebook_loss_weight: float = 1.0,
        beta_placement: str = "commitment",
        chunk_size: int = 8192,
    ):
        super().__init__()
        self.codebook_size = num_embeddings
        self.embed_dim = embed_dim
        self.commitment_cost = commitment_cost
        self.codebook_loss_weight = codebook_loss_weight
        self.beta_placement = beta_placement
        self.chunk_size = chunk_size
        self.embedding = nn.Embedding(num_embeddings, embed_dim)

    def reset_parameters(self) -> None:
        # taming's initialisation: codes start in a small box around the origin.
        bound = 1.0 / self.codebook_size
        init.uniform_(self.embedding.weight, -bound, bound)

    def quantize_latents(self, latents: torch.Tensor) -> QuantizerOutput:
        input_dtype = latents.dtype
        with torch.autocast(device_type=latents.device.type, enabled=False):
            latents = latents.float()
            batch, dim, height, width = latents.shape
            flat = latents.permute(0, 2, 3, 1).reshape(-1, dim)  # (B, D, h, w) -> (B*h*w, D)
            codebook = self.embedding.weight.float()
            indices = nearest_code(flat.detach(), codebook.detach(), self.chunk_size)
            codes = F.embedding(indices, codebook).view(batch, height, width, dim).permute(0, 3, 1, 2)

            codebook_term = F.mse_loss(codes, latents.detach())
            commitment_term = F.mse_loss(latents, codes.detach())
            beta = self.commitment_cost
            codebook_loss = self.codebook_loss_weight * (beta if self.beta_placement == "codebook" else 1.0) * codebook_term
            commitment_loss = (beta if self.beta_placement == "commitment" else 1.0) * commitment_term

            if latents.requires_grad:
                quantized = latents + (codes - latents).detach()  # straight-through estimator
            else:
                quantized = codes  # inference: the codes exactly, so decoding ids and latents agree bit for bit
            indices = indices.view(batch, height, width)
            perplexity, usage = codebook_statistics(indices, self.codebook_size)
        return QuantizerOutput(
            quantized=quantized.to(input_dtype),
            indices=indices,
            loss=codebook_loss + commitment_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=perplexity,
            codebook_usage=usage,
        )

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2)  # (B, h, w) -> (B, D, h, w)
