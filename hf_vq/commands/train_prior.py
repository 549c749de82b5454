"""`hf-vq train-prior --tokens DIR --output-dir DIR`: a prior over a token set (`hf-vq tokenize`'s), saved as a
`VQImagePipeline` folder (`hf_vq.training.prior.train_prior`). Arguments: `hf_vq.training.prior_arguments`."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`hf-vq train-prior ARGS`. Errors propagate: `hf_vq.cli` turns them into one-paragraph messages."""
    from ..training.prior import train_prior
    from ..training.prior_arguments import parse_prior_args

    return train_prior(parse_prior_args(argv))
