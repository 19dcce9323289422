"""How a mistake on the command line is told: one ``error:`` line with a hint, exit 2.

typer up to 0.2x raises the standalone ``click`` package's exceptions; later
releases bundle a copy of click (``typer._click``) whose exceptions are other
classes with the same names. Catching only one of them turned every usage
error into a traceback, so the classes are found from what the installed typer
itself raises (``typer.BadParameter``'s bases), plus standalone click's when it
is installed (a command may still raise those).
"""

from __future__ import annotations

import sys
from typing import Any

import typer


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """``ClickException`` of the click typer carries, and of standalone click if present."""
    found = [cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"]
    try:
        import click
    except ImportError:  # typer >= 0.29 no longer needs it
        pass
    else:
        found.append(click.ClickException)
    return tuple(dict.fromkeys(found))


def _abort_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [typer.Abort]
    try:
        import click
    except ImportError:
        pass
    else:
        found.append(click.exceptions.Abort)
    return tuple(dict.fromkeys(found))


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _lower_first(text: str) -> str:
    # click's messages start with a capital ("No such option"); ours never do.
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def describe(error: Any) -> str:
    """The one line for a click exception: what is wrong, then where to find help."""
    message = _lower_first(_one_line(error.format_message())).rstrip(".")
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        return f"error: {message} (see `{ctx.command_path} --help`)"
    return f"error: {message}"


def handle(error: BaseException) -> int | None:
    """Tell the user about a click usage error or abort and return the exit code;
    ``None`` if ``error`` is neither (a bug, to be raised)."""
    if isinstance(error, _click_exception_types()):
        if type(error).__name__ == "NoArgsIsHelpError":
            # A group given no subcommand: its help is the answer, not a mistake
            # (as click before 8.2 had it: on stdout, exit 0).
            sys.stdout.write(error.format_message().rstrip("\n") + "\n")  # type: ignore[attr-defined]
            return 0
        sys.stderr.write(describe(error) + "\n")
        # Every usage mistake exits 2 (click's UsageError does; a FileError says 1).
        return 2
    if isinstance(error, _abort_types()):
        sys.stderr.write("interrupted\n")
        return 130
    return None
