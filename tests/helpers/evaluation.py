"""Stand-ins that keep evaluation tests fast: a tiny feature network in place of the FID Inception."""

from __future__ import annotations

import torch


def tiny_feature_network(folder) -> str:
    """A TorchScript stand-in for the FID Inception ((B, 3, 299, 299) in [-1, 1] -> (B, 16) features), saved as
    `folder/features.pt`; returns its path, for `fid_network=` / `--fid-network`. Tests of the evaluation path then
    run the protocol's code without seconds per image in Inception-v3 or seconds on a 2048-d FID."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 16))
    path = folder / "features.pt"
    torch.jit.script(network).save(str(path))
    return str(path)
