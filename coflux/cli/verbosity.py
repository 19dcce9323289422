"""How much a long-running command (``coflux agent``, ``coflux dev``) prints: ``-v``/``-q``.

By default: its own lines (connections, one per execution, warnings) and
nothing from the libraries it uses (httpx logs every request at INFO, which
was 68 of an agent's 85 lines). ``-v`` adds Coflux's debug lines and the
HTTP requests; ``-q`` keeps only warnings and errors.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also print debug lines and every HTTP request.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")]

#: Libraries whose INFO lines are noise unless asked for.
_CHATTY = ("httpx", "httpcore", "websockets", "watchfiles")


def configure(verbose: bool, quiet: bool) -> None:
    from ..errors import InvalidInput

    if verbose and quiet:
        raise InvalidInput("--verbose and --quiet contradict each other; give one")
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
