"""What every Gradio tab of the demo shares: bad inputs shown as a message in the page, not as a stack trace."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable

import gradio as gr


def user_errors(function: Callable) -> Callable:
    """`function` as an event handler whose `ValueError` / `OSError` (the library's errors about the user's input,
    raised with a message meant for them) reaches the page as that message, in one paragraph (`gr.Error`). Any
    other exception is a bug, and Gradio shows its generic error."""

    @functools.wraps(function)
    def handler(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, OSError) as error:
            message = " ".join(str(error).split()) or type(error).__name__
            raise gr.Error(html.escape(message), print_exception=False) from None  # gr.Error renders HTML

    return handler


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (`|`-separated) of `rows` under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = ["markdown_table", "user_errors"]
