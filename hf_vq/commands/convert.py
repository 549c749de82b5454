"""`hf-vq convert`: checkpoints from other code bases into hf-vq (the converters live in `hf_vq.integrations`).

    hf-vq convert taming CKPT --config YAML OUT [--ema] [--no-discriminator]

writes a `save_pretrained` folder (model card naming the source) with the discriminator in `OUT/discriminator`,
ready for `hf-vq train --init-from OUT` and for diffusers pipelines.
"""

from __future__ import annotations

import logging

from ..parsing import CommandParser

logger = logging.getLogger(__name__)


def build_parser() -> CommandParser:
    parser = CommandParser(prog="hf-vq convert", description="Convert checkpoints from other formats.")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT", prog="hf-vq convert")
    taming = formats.add_parser(
        "taming",
        help="taming-transformers VQ-GAN or latent-diffusion VQ first-stage .ckpt (+ its config yaml)",
        description="Convert a taming-transformers / LDM VQ .ckpt (read with torch.load(weights_only=True)).",
    )
    taming.add_argument("checkpoint", help="the .ckpt file (Lightning checkpoint or plain state dict)")
    taming.add_argument("output_dir", metavar="OUT", help="folder to write the hf-vq model to")
    taming.add_argument(
        "--config", required=True, metavar="YAML", help="the config yaml the checkpoint was trained with"
    )
    taming.add_argument(
        "--ema", action="store_true", help="use LDM's EMA weights (model_ema.*) instead of the raw ones"
    )
    taming.add_argument(
        "--no-discriminator", action="store_true", help="do not convert the GAN discriminator (loss.discriminator.*)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..integrations.taming import convert_taming_checkpoint

    converted = convert_taming_checkpoint(
        args.checkpoint,
        args.config,
        output_dir=args.output_dir,
        use_ema=args.ema,
        include_discriminator=not args.no_discriminator,
    )
    model = converted.model
    logger.info(
        "Wrote %s: VQGANModel (%.1fM parameters, K=%d, f=%d)%s; dropped %d keys (LPIPS copy, EMA, ...).",
        args.output_dir,
        model.num_parameters() / 1e6,
        model.config.num_vq_embeddings,
        model.downsampling_factor,
        " + discriminator/" if converted.discriminator is not None else "",
        len(converted.dropped_keys),
    )
    return 0
