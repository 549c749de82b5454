"""`hf-vq convert`: checkpoints from other code bases into hf-vq (the converters live in `hf_vq.integrations`).

    hf-vq convert taming CKPT --config YAML OUT [--ema] [--no-discriminator]

writes a `save_pretrained` folder (model card naming the source) with the discriminator in `OUT/discriminator`,
ready for `hf-vq train --init-from OUT` and for diffusers pipelines.

    hf-vq convert llamagen VQ_CKPT OUT [--gpt GPT_CKPT --gpt-model GPT-B --image-size 256] [--vq-model VQ-16]

writes LlamaGen's tokenizer as a `VQGANModel` folder or, with `--gpt`, a `VQImagePipeline` folder (tokenizer, prior
and card) for `hf-vq generate OUT --class-label ...`.
"""

from __future__ import annotations

import logging

from ..parsing import CommandParser

# The size names only: the converter (torch, transformers) is imported when a conversion runs.
GPT_MODELS = ("GPT-B", "GPT-L", "GPT-XL", "GPT-XXL", "GPT-3B")
VQ_MODELS = ("VQ-16", "VQ-8")

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
    llamagen = formats.add_parser(
        "llamagen",
        help="LlamaGen's tokenizer (vq_ds16_c2i.pt) and, with --gpt, a class-conditional GPT (c2i_B_256.pt)",
        description="Convert LlamaGen checkpoints (read with torch.load(weights_only=True)): the tokenizer alone, or "
        "with --gpt a VQImagePipeline folder.",
    )
    llamagen.add_argument("vq_checkpoint", metavar="VQ_CKPT", help="the tokenizer checkpoint (vq_ds16_c2i.pt)")
    llamagen.add_argument("output_dir", metavar="OUT", help="a new folder to write the model or pipeline to")
    llamagen.add_argument("--gpt", metavar="GPT_CKPT", help="a class-conditional GPT checkpoint (c2i_*.pt)")
    llamagen.add_argument(
        "--gpt-model", default="GPT-B", choices=list(GPT_MODELS), help="the GPT's size (default: GPT-B)"
    )
    llamagen.add_argument(
        "--image-size", type=int, default=256, help="the GPT's image size: 256 (16x16 ids) or 384 (24x24); default 256"
    )
    llamagen.add_argument("--vq-model", default="VQ-16", choices=list(VQ_MODELS), help="the tokenizer (default VQ-16)")
    llamagen.add_argument("--codebook-size", type=int, default=16384, help="LlamaGen's --codebook-size (16384)")
    llamagen.add_argument("--codebook-embed-dim", type=int, default=8, help="LlamaGen's --codebook-embed-dim (8)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.format == "llamagen":
        return convert_llamagen_main(args)
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


def convert_llamagen_main(args) -> int:
    from ..integrations.llamagen import convert_llamagen

    converted = convert_llamagen(
        args.vq_checkpoint,
        args.output_dir,
        gpt_checkpoint=args.gpt,
        gpt_model=args.gpt_model,
        image_size=args.image_size,
        vq_model=args.vq_model,
        codebook_size=args.codebook_size,
        codebook_embed_dim=args.codebook_embed_dim,
    )
    if args.gpt is None:
        logger.info(
            "Wrote %s: VQGANModel (LlamaGen %s, %.1fM parameters).",
            args.output_dir,
            args.vq_model,
            converted.num_parameters() / 1e6,
        )
    else:
        prior = converted.transformer
        logger.info(
            "Wrote %s: VQImagePipeline (LlamaGen %s, %.1fM parameters, %dx%d ids, %d classes). Sample with "
            "`hf-vq generate %s --class-label 207 --guidance-scale 4 --sampling-option top_k=2000`.",
            args.output_dir,
            args.gpt_model,
            prior.num_parameters() / 1e6,
            *prior.config.latent_shapes[0][:2],
            prior.config.num_classes,
            args.output_dir,
        )
    return 0
