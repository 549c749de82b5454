"""Residual vector quantisation (Zeghidour et al. 2021, SoundStream, https://arxiv.org/abs/2107.03312 §3.2)."""

from __future__ import annotations

import torch
from torch import nn

from .modeling_outputs import QuantizerOutput
from .quantizer_base import BaseQuantizer
from .quantizer_vq import VectorQuantizer


class ResidualVectorQuantizer(BaseQuantizer):
    """`num_quantizers` [`VectorQuantizer`]s (`layers.{i}`), each quantizing what the previous ones left over.

    The quantized latents are the sum of the stages' codes; token ids have shape `(B, h, w, num_quantizers)`,
    coarse (stage 0) to fine, each in `[0, K)`. Every stage has its own codebook and all the `VectorQuantizer`
    options (EMA, k-means, restarts, ...). Losses are summed over stages; `perplexity` and `codebook_usage` are
    stage averages, `running_usage` the stage average and `dead_codes` the total over stages.
    """

    def __init__(self, *, num_quantizers: int, **vector_quantizer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(VectorQuantizer(**vector_quantizer_kwargs) for _ in range(num_quantizers))
        self.codebook_size = self.layers[0].codebook_size
        self.embed_dim = self.layers[0].embed_dim
        self.num_quantizers = num_quantizers
        self.stacks_stages = True  # (B, h, w, num_quantizers), one as well: one rank whatever the depth

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Ids `(B, h, w, num_quantizers)` -> the sum of the stages' codes `(B, D, h, w)`."""
        codes = self.layers[0].indices_to_codes(indices[..., 0])
        for stage, layer in enumerate(self.layers[1:], start=1):
            codes = codes + layer.indices_to_codes(indices[..., stage])
        return codes

    def get_codebook_entry(self, indices: torch.LongTensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Ids of any layout with `num_quantizers` last, plus diffusers' `(B, h, w, D)` shape -> (B, D, h, w)."""
        if shape is not None:
            indices = indices.reshape(*shape[:-1], self.num_quantizers)
        return self.indices_to_codes(indices)

    def quantize_latents(self, latents: torch.Tensor) -> QuantizerOutput:
        residual = latents
        outputs = []
        for layer in self.layers:
            output = layer.quantize_latents(residual)
            outputs.append(output)
            # each stage sees what the earlier stages' codes (not their gradient estimators) left unexplained
            residual = residual - output.quantized.detach()
        quantized = outputs[0].quantized
        for output in outputs[1:]:
            quantized = quantized + output.quantized
        indices = torch.stack([output.indices for output in outputs], dim=-1)  # (B, h, w, num_quantizers)
        if not latents.requires_grad:
            quantized = self.indices_to_codes(indices)  # exactly what decoding the ids gives

        def total(name: str) -> torch.Tensor:
            return torch.stack([getattr(output, name) for output in outputs]).sum(0)

        def mean(name: str) -> torch.Tensor:
            return torch.stack([getattr(output, name).float() for output in outputs]).mean(0)

        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=total("loss"),
            codebook_loss=total("codebook_loss"),
            commitment_loss=total("commitment_loss"),
            perplexity=mean("perplexity"),
            codebook_usage=mean("codebook_usage"),
            entropy_loss=total("entropy_loss"),
            running_usage=mean("running_usage"),
            dead_codes=total("dead_codes"),
        )
