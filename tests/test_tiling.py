"""Tiled encode / decode report their progress: `progress(done, total)` once per tile actually computed."""

from __future__ import annotations

import torch
from skimage import data

from hf_vq import VQGANModel
from hf_vq.data import from_uint8

from helpers import tiny_vqgan_config


def photo(height: int, width: int) -> torch.Tensor:
    """The astronaut photo, area-resized to `height` x `width`, in [-1, 1], batch of one."""
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float()
    resized = torch.nn.functional.interpolate(image, size=(height, width), mode="area").round().to(torch.uint8)
    return from_uint8(resized)


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_progress_sees_every_tile_once():
    torch.manual_seed(0)
    model = VQGANModel(tiny_vqgan_config()).eval()  # f = 2, sample_size 32
    pixels = photo(56, 104)
    # 32-px tiles overlapping by 0.25 * 32 = 8 px, so a stride of 24 px and a last tile flush with the edge:
    # rows start at 0, 24 (56 = 24 + 32); columns at 0, 24, 48, 72 (104 = 72 + 32): 2 x 4 tiles, in both passes.
    assert model.tile_count(56, 104) == 8
    encoder_calls, decoder_calls = count_calls(model.encoder), count_calls(model.decoder)
    seen = {"encode": [], "decode": [], "decode_indices": []}
    with torch.no_grad():
        encoded = model.tiled_encode(pixels, progress=lambda *args: seen["encode"].append(args))
        decoded = model.tiled_decode(encoded.quantized, progress=lambda *args: seen["decode"].append(args))
        from_ids = model.tiled_decode_indices(encoded.indices, progress=lambda *a: seen["decode_indices"].append(a))
        # The callback only observes: results equal those of a call without one.
        assert torch.equal(model.tiled_encode(pixels).latents, encoded.latents)
        assert torch.equal(model.tiled_decode(encoded.quantized), decoded)
    assert all(calls == [(done, 8) for done in range(1, 9)] for calls in seen.values()), seen
    assert len(encoder_calls) == 8 + 8 and len(decoder_calls) == 8 + 8 + 8  # every tile once per call, no more
    assert decoded.shape == pixels.shape and torch.equal(from_ids, decoded)


def test_progress_with_other_tile_settings_and_a_single_tile():
    torch.manual_seed(0)
    model = VQGANModel(tiny_vqgan_config()).eval()
    pixels = photo(40, 64)
    # 16-px tiles, overlap round(16 * 0.5 / 2) * 2 = 8 px, stride 8: rows 0, 8, 16, 24; columns 0, 8, ..., 48.
    assert model.tile_count(40, 64, tile_sample_size=16, overlap=0.5) == 4 * 7
    seen = []
    with torch.no_grad():
        model.tiled_encode(pixels, tile_sample_size=16, overlap=0.5, progress=lambda *args: seen.append(args))
        assert seen == [(done, 28) for done in range(1, 29)]
        seen.clear()  # an image that fits one tile runs whole, and still reports that one tile
        model.tiled_encode(pixels, tile_sample_size=64, progress=lambda *args: seen.append(args))
    assert seen == [(1, 1)] and model.tile_count(40, 64, tile_sample_size=64) == 1
