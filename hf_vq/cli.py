"""`hf-vq`: thin subcommands over library functions.

Each subcommand lives in its own module of `hf_vq.commands` as `main(argv) -> int`, imported only when it runs, so
`hf-vq --help` imports neither torch nor transformers and a subcommand's optional dependencies (accelerate, datasets,
diffusers) are needed only by it. `python -m hf_vq.cli COMMAND ...` is the same as `hf-vq COMMAND ...` (for
`accelerate launch -m hf_vq.cli train ...`).

This is the one place errors meet the user: a missing file, a bad value or config, a corrupt weights file (an
`OSError` or `ValueError` raised with a message that names what was wrong, what was expected and the fix) is printed
as one paragraph, `hf-vq <command>: error: ...`, with exit status 2 and no traceback; `--debug` anywhere on the
command line shows the traceback instead. Any other exception is a bug and keeps its traceback. Ctrl-C is a normal way
to stop: one line says what was kept and the command that continues (`interrupted_message`), with exit status 130.
"""

from __future__ import annotations

import difflib
import importlib
import os
import shlex
import sys

# command -> (module under hf_vq.commands, one-line help). A module is imported only when its command runs and has
# `main(argv) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train or fine-tune a VQ-GAN / VQ-VAE / VQ-VAE-2 (default: built-in photos, offline)"),
    "evaluate": ("evaluate", "PSNR, SSIM, LPIPS, rFID and code usage of a model on a dataset"),
    "reconstruct": ("reconstruct", "write side-by-side input/reconstruction PNGs"),
    "encode": ("encode", "images -> token grids (safetensors or npy)"),
    "decode": ("decode", "token grids -> images"),
    "push": ("push", "upload a saved model folder to the Hub in one commit"),
    "convert": ("convert", "convert taming / LDM checkpoints to hf-vq"),
    "assets": ("assets", "prepare the offline assets (LPIPS, FID Inception, built-in photos)"),
    "tokenize": ("tokenize", "images -> parquet token shards + labels, for a prior"),
    "train-prior": ("train_prior", "train a transformer prior over a token set"),
    "evaluate-prior": ("evaluate_prior", "held-out NLL, FID and class accuracy of a prior, beside its baselines"),
    "generate": ("generate", "generate images with a prior pipeline (a grid PNG)"),
    "demo": ("demo", "a Gradio app in the browser for a tokenizer or pipeline, or its Space folder (--export)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hf-vq <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
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
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        expected = ", ".join(COMMANDS)
        print(f"hf-vq: unknown command {command!r}; expected one of {expected}.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    debug = "--debug" in rest
    rest = [arg for arg in rest if arg != "--debug"]
    try:
        return int(importlib.import_module(f"hf_vq.commands.{COMMANDS[command][0]}").main(rest) or 0)
    except ModuleNotFoundError as error:  # an optional dependency, imported by the command or on first use
        missing = (error.name or "").split(".")[0]
        extras = ",".join(extras_providing(missing)) if missing not in ("", "hf_vq") else ""
        if debug or not extras:
            raise  # our own bug, or a module no extra of hf-vq provides
        print(
            f"hf-vq {command} needs {missing}, an optional dependency that is not installed. Install it with "
            f"`pip install 'hf-vq[{extras}]'` (in an hf-vq checkout: `pip install -e '.[{extras}]'`).",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"hf-vq {command}: {interrupted_message(command, rest, interrupt)}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended
    except Exception as error:
        if debug or not is_user_error(error):
            raise
        if os.environ.get("RANK", "0") == "0":  # under `accelerate launch`, every rank fails alike: say it once
            print(f"hf-vq {command}: error: {error_message(error)} (Add --debug for the traceback.)", file=sys.stderr)
        return 2


# Import names whose distribution on PyPI is named otherwise.
DISTRIBUTIONS = {"skimage": "scikit-image", "sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}


def extras_providing(module: str) -> list[str]:
    """The extras of hf-vq's installed metadata that list the distribution of the top-level module `module`, sorted
    (`yaml` -> `["diffusers", "training"]`); empty where none does or the metadata cannot be read."""
    from importlib.metadata import PackageNotFoundError, metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted = canonicalize_name(DISTRIBUTIONS.get(module, module))
    try:
        project = metadata("hf-vq")
    except PackageNotFoundError:
        return []
    requirements = [Requirement(line) for line in project.get_all("Requires-Dist") or []]
    listing = [r for r in requirements if canonicalize_name(r.name) == wanted and r.marker is not None]
    extras = project.get_all("Provides-Extra") or []
    return sorted(extra for extra in extras if any(r.marker.evaluate({"extra": extra}) for r in listing))


# What a command keeps when Ctrl-C stops it, when the command itself does not say (the trainers do: the loop raises
# a KeyboardInterrupt that carries its own `message` and `continue_flags`).
INTERRUPTED = {
    "tokenize": ("; the shards finished so far are kept. The same command continues after them:", {}),
    "generate": ("; nothing was written.", None),
}


def interrupted_message(command: str, argv: list[str], interrupt: BaseException) -> str:
    """The one line Ctrl-C leaves: what was kept and the command that continues.

    `interrupt.message` (else the command's entry in `INTERRUPTED`) follows "stopped by Ctrl-C", says what was kept
    and ends with a colon when a command follows. `interrupt.continue_flags` (a dict; None when there is nothing to
    continue) are the flags to set on the same command line to continue: each replaces a flag of that name in `argv`.
    """
    message, flags = INTERRUPTED.get(command, ("", None))
    message, flags = getattr(interrupt, "message", message), getattr(interrupt, "continue_flags", flags)
    line = f"stopped by Ctrl-C{message}"
    if flags is None:
        return line if line.endswith(".") else line + "."
    names = {spelling for name in flags for spelling in (name, name.replace("-", "_").replace("__", "--"))}
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True  # its value follows
        elif arg.split("=", 1)[0] not in names:
            kept.append(arg)
    again = [*kept, *(part for name, value in flags.items() for part in (name, str(value)))]
    # Under `accelerate launch` (several processes), the same launcher continues.
    launcher = "accelerate launch [its flags] -m hf_vq.cli" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "hf-vq"
    return f"{line} {launcher} {shlex.join([command, *again])}"


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
