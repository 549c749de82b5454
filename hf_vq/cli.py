"""`hf-vq`: thin subcommands over library functions.

Each subcommand lives in its own module as `main(argv) -> int`, imported only when it runs, so `hf-vq --help`
stays fast and a subcommand's optional dependencies (accelerate, datasets, diffusers) are needed only by it.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": (
        "hf_vq.training.tokenizer",
        "main",
        "train or fine-tune a VQ-GAN / VQ-VAE / VQ-VAE-2 (default: built-in photos, offline)",
    ),
    "evaluate": ("hf_vq.commands", "evaluate_main", "PSNR, SSIM, LPIPS, rFID and code usage of a model on a dataset"),
    "reconstruct": ("hf_vq.commands", "reconstruct_main", "write side-by-side input/reconstruction PNGs"),
    "encode": ("hf_vq.commands", "encode_main", "images -> token grids (safetensors or npy)"),
    "decode": ("hf_vq.commands", "decode_main", "token grids -> images"),
    "push": ("hf_vq.commands", "push_main", "upload a saved model folder to the Hub in one commit"),
    "convert": ("hf_vq.integrations.convert", "main", "convert taming / LDM checkpoints to hf-vq"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hf-vq <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    lines += ["", "Run `hf-vq <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from ._version import __version__

        print(f"hf-vq {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        expected = ", ".join(COMMANDS)
        print(f"hf-vq: unknown command {command!r}; expected one of {expected}.\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "hf_vq":
            raise  # our own bug, not a missing extra
        print(
            f"hf-vq {command} needs an optional dependency that is not installed ({error}). "
            "Install the extras with `pip install 'hf-vq[training,metrics,diffusers]'`.",
            file=sys.stderr,
        )
        return 1
    return int(getattr(module, function_name)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
