"""The parser habits every `hf-vq` subcommand shares, with argparse and difflib only (so `hf-vq --help` stays fast).

- An unknown flag is an error that names the closest known one (`unknown argument '--dataset'; did you mean
  --dataset-name?`), found before anything else is checked: a typo is reported as a typo, not as a missing flag.
- `--output_dir` works like `--output-dir` (the spelling `HfArgumentParser` accepts for `hf-vq train`), and
  `--help` shows the dashed spelling only.
- One name per concept across commands (`--dataset-name`, `--dataset-config-name`, `--resolution`: `hf-vq train`'s,
  which are also its YAML keys and `training_args.json` fields). Older spellings keep working as aliases; `--help`
  lists them once, under the options, instead of beside each flag, so it teaches one vocabulary.
- No abbreviations (`--out` for `--output-dir`): a prefix that works today turns ambiguous when a flag is added.
- A short usage line, `prog MODEL [--FLAG VALUE ...]  (prog --help lists every flag)`, and argparse's error style:
  that line, then `prog: error: ...`, exit status 2.

[`CommandParser`] does all of it; `hf-vq train`'s `HfArgumentParser` uses the functions below.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Mapping, Sequence

# What argparse reads as a negative number (a value), not as a flag.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def long_options(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Every long spelling `parser` accepts (hidden ones included) -> the spelling `--help` shows for it."""
    shown = {}
    for option, action in parser._option_string_actions.items():
        if option.startswith("--"):
            visible = [s for s in action.option_strings if s.startswith("--")]
            shown[option] = visible[0] if visible else option
    return shown


def unknown_argument_message(parser: argparse.ArgumentParser, argument: str) -> str:
    """`unknown argument '--datset'; did you mean --dataset-name?`: the closest flag, by its shown spelling."""
    options = long_options(parser)
    flag = argument.split("=", 1)[0]
    close = difflib.get_close_matches(flag.replace("_", "-"), sorted(options), n=1, cutoff=0.6)
    return f"unknown argument {argument!r}" + (f"; did you mean {options[close[0]]}?" if close else "")


def unknown_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The words of `argv` that argparse would read as flags and `parser` does not know (up to a `--`)."""
    found = []
    for word in argv:
        if word == "--":
            break
        if not word.startswith("-") or word == "-" or _NEGATIVE_NUMBER.match(word):
            continue
        if word.split("=", 1)[0] not in parser._option_string_actions:
            found.append(word)
    return found


def hide_underscore_spellings(parser: argparse.ArgumentParser) -> None:
    """For a parser that adds each flag twice (`HfArgumentParser`: `--model_type`, `--model-type`): `--help` and
    error messages show the dashed spelling only, while the command line keeps accepting both (argparse looks flags
    up in `_option_string_actions`, which keeps every spelling)."""
    for action in parser._actions:
        dashed = [s for s in action.option_strings if "_" not in s]
        if dashed and len(dashed) < len(action.option_strings):
            action.option_strings = dashed


def accept_underscore_spellings(parser: argparse.ArgumentParser) -> None:
    """`--output_dir` works like `--output-dir` (and an alias `--image_size` like `--image-size`), hidden."""
    for option, action in list(parser._option_string_actions.items()):
        if option.startswith("--") and "-" in option[2:]:
            parser._option_string_actions.setdefault("--" + option[2:].replace("-", "_"), action)


def add_aliases(parser: argparse.ArgumentParser, aliases: Mapping[str, str]) -> None:
    """Older spellings (`{"--dataset": "--dataset-name"}`) that keep working, hidden beside their flag in `--help`
    and listed once at its end."""
    for old, new in aliases.items():
        parser._option_string_actions[old] = parser._option_string_actions[new]
    text = ", ".join(f"{old} ({new})" for old, new in aliases.items())
    note = f"Older spellings that still work: {text}."
    parser.epilog = f"{parser.epilog}\n\n{note}" if parser.epilog else note


def short_usage(parser: argparse.ArgumentParser) -> str:
    """`prog POSITIONALS [--FLAG VALUE ...]  (prog --help lists every flag)`: the first line of every error."""
    formatter = parser._get_formatter()
    words = [parser.prog]
    for action in parser._actions:
        if not action.option_strings:
            words.append(formatter._format_args(action, action.dest.upper()))
    words.append("[--FLAG VALUE ...]")
    return f"{' '.join(words)}  ({parser.prog} --help lists every flag)"


class CommandParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` with the habits of every `hf-vq` subcommand (see the module docstring).

    Args:
        prog (`str`):
            The command, `"hf-vq evaluate"`.
        description (`str`, *optional*):
            What it does, for `--help`.
        aliases (`Mapping[str, str]`, *optional*):
            Older spelling -> the flag's name, registered by [`CommandParser.parse_known_args`] once every flag is
            added.
    """

    def __init__(self, prog: str, description: str | None = None, aliases: Mapping[str, str] | None = None, **kwargs):
        super().__init__(prog=prog, description=description, allow_abbrev=False, **kwargs)
        self.aliases = dict(aliases or {})
        self._spellings_added = False

    def _add_spellings(self) -> None:
        if not self._spellings_added:
            if self.aliases:
                add_aliases(self, self.aliases)
            accept_underscore_spellings(self)
            if self.usage is None:
                self.usage = short_usage(self)
            self._spellings_added = True

    def format_help(self) -> str:
        self._add_spellings()
        return super().format_help()

    def parse_known_args(self, args=None, namespace=None):
        self._add_spellings()
        argv = list(sys.argv[1:] if args is None else args)
        # A parser with subcommands (`hf-vq convert taming ...`) leaves the subcommand's flags to its parser.
        if not any(isinstance(action, argparse._SubParsersAction) for action in self._actions):
            unknown = unknown_options(self, argv)
            if unknown:
                self.error(unknown_argument_message(self, unknown[0]))
        return super().parse_known_args(argv, namespace)


__all__ = [
    "CommandParser",
    "accept_underscore_spellings",
    "add_aliases",
    "hide_underscore_spellings",
    "long_options",
    "short_usage",
    "unknown_argument_message",
    "unknown_options",
]
