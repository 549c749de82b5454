"""`hf-vq`: thin subcommands over library functions.

Each subcommand lives in its own module as `main(argv) -> int`, imported only when it runs, so `hf-vq --help`
stays fast and a subcommand's optional dependencies (accelerate, datasets, diffusers) are needed only by it.

This is the one place errors meet the user: a missing file, a bad value or config, a corrupt weights file (an
`OSError` or `ValueError` raised with a message that names what was wrong, what was expected and the fix) is printed
as one paragraph, `hf-vq <command>: error: ...`, with exit status 2 and no traceback; `--debug` anywhere on the
command line shows the traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import os
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
    "assets": ("hf_vq.commands", "assets_main", "prepare the offline assets (LPIPS, FID Inception, built-in photos)"),
    "tokenize": ("hf_vq.generation_commands", "tokenize_main", "images -> parquet token shards + labels, for a prior"),
    "train-prior": ("hf_vq.generation_commands", "train_prior_main", "train a transformer prior over a token set"),
    "evaluate-prior": (
        "hf_vq.generation_commands",
        "evaluate_prior_main",
        "held-out NLL, FID and class accuracy of a prior, beside its baselines",
    ),
    "generate": ("hf_vq.generation_commands", "generate_main", "generate images with a prior pipeline (a grid PNG)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hf-vq <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    lines += ["", "Run `hf-vq <command> --help` for a command's options; add --debug to see tracebacks of errors."]
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
    debug = "--debug" in rest
    rest = [arg for arg in rest if arg != "--debug"]
    module_name, function_name, _ = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "hf_vq":
            raise  # our own bug, not a missing extra
        print(
            f"hf-vq {command} needs an optional dependency that is not installed ({error}). "
            "Install the extras from your hf-vq checkout with `pip install -e '.[training,metrics,diffusers]'`.",
            file=sys.stderr,
        )
        return 1
    try:
        return int(getattr(module, function_name)(rest) or 0)
    except Exception as error:
        if debug or not is_user_error(error):
            raise
        if os.environ.get("RANK", "0") == "0":  # under `accelerate launch`, every rank fails alike: say it once
            print(f"hf-vq {command}: error: {error_message(error)} (Add --debug for the traceback.)", file=sys.stderr)
        return 2


def is_user_error(error: BaseException) -> bool:
    """Errors about the user's input or files, raised with a message meant for them (see the module docstring)."""
    return isinstance(error, (OSError, ValueError)) or type(error).__name__ == "SafetensorError"


def error_message(error: BaseException) -> str:
    """One paragraph: the message without `[Errno N]` and with its line breaks joined."""
    text = error.strerror if isinstance(error, OSError) and len(error.args) == 2 and error.strerror else str(error)
    if isinstance(error, OSError) and error.filename and error.filename not in text:
        text = f"{text}: {error.filename}"
    return " ".join(text.split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
