"""Run by tests/test_training_cli.py under `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo).

Each rank quantizes *different* latents (real photo patches, a different photo per rank) for several training
steps, with (a) an EMA codebook only and (b) EMA + k-means init + dead-code restarts + cosine codes, then saves its
quantizers' state dicts and its data to `<out>/rank<r>.pt`. The test checks both ranks hold identical codebooks and
statistics, and that (a) equals a single process trained on both ranks' data at once.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from skimage import data as skdata

from hf_vq.modeling.quantizer_vq import VectorQuantizer

STEPS = 5
EMA_ONLY = dict(codebook_size=32, embed_dim=4, codebook_update="ema", ema_decay=0.8)
EVERYTHING = dict(EMA_ONLY, kmeans_init=True, kmeans_iters=3, dead_code_restart=True, usage_window=2, l2_norm=True)


def rank_latents(rank: int, step: int) -> torch.Tensor:
    """(2, 4, 8, 8) latents from 4x4 patches of a photo that differs per rank, a different crop per step."""
    photo = (skdata.astronaut(), skdata.coffee())[rank]
    pixels = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float()[None] / 127.5 - 1
    crop = pixels[:, :, 32 * step : 32 * step + 64, 40 * step : 40 * step + 64]
    patches = F.pixel_unshuffle(F.interpolate(crop, size=(32, 32), mode="area"), 4)  # (1, 48, 8, 8)
    mix = torch.randn(4, 48, generator=torch.Generator().manual_seed(1)) / 48**0.5
    latents = torch.einsum("dc,bchw->bdhw", mix, patches)
    return torch.cat([latents, latents.flip(-1)])


def build(options: dict) -> VectorQuantizer:
    torch.manual_seed(0)  # same initial codebook on every rank, as `from_pretrained` / DDP would give
    quantizer = VectorQuantizer(**options)
    quantizer.reset_parameters()
    return quantizer.train()


def main() -> int:
    out = sys.argv[1]
    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    torch.manual_seed(1234 + rank)  # different random streams per rank: restarts/k-means must still agree
    results = {"world_size": accelerator.num_processes, "distributed": torch.distributed.is_initialized()}
    for name, options in (("ema_only", EMA_ONLY), ("everything", EVERYTHING)):
        quantizer = build(options)
        with torch.no_grad():
            for step in range(STEPS):
                quantizer(rank_latents(rank, step), return_dict=True)
        results[name] = {key: value.clone() for key, value in quantizer.state_dict().items()}
    results["data"] = [rank_latents(rank, step) for step in range(STEPS)]
    torch.save(results, f"{out}/rank{rank}.pt")
    accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
