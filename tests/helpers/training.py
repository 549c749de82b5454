"""The flags of a tiny training run, in one place: the tiny model of the chosen family at 32 px, batches of 2, no
data-loader workers, no trackers, no perceptual network to download, a short evaluation."""

from __future__ import annotations

import json

from .configs import TINY_DISCRIMINATOR, TINY_VQGAN, TINY_VQVAE, TINY_VQVAE2

TINY_MODELS = {"vqgan": TINY_VQGAN, "vqvae": TINY_VQVAE, "vqvae2": TINY_VQVAE2}


def tiny_train_flags(
    output_dir, *extra: str, model_type: str = "vqgan", model_config: dict | str | None = None, num_eval_images=2
) -> list[str]:
    """`hf-vq train` flags for a tiny run into `output_dir` (None: the run's default folder), then `extra`.

    The VQ-GAN gets the tiny discriminator and no perceptual term; the VQ-VAEs have neither. `model_config` (a dict
    or a JSON string, which may be invalid on purpose) replaces the family's tiny config. The step budget, the
    schedule and the data are the caller's: give them in `extra`.
    """
    config = TINY_MODELS[model_type] if model_config is None else model_config
    flags = [] if output_dir is None else ["--output-dir", str(output_dir)]
    if model_type != "vqgan":
        flags += ["--model-type", model_type]
    flags += ["--model-config", config if isinstance(config, str) else json.dumps(config)]
    if model_type == "vqgan":
        flags += ["--discriminator-config", json.dumps(TINY_DISCRIMINATOR), "--perceptual-weight", "0"]
    flags += ["--resolution", "32", "--train-batch-size", "2", "--dataloader-num-workers", "0", "--report-to", "none"]
    return [*flags, "--num-eval-images", str(num_eval_images), *extra]
