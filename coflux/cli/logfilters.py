"""The filters of ``coflux logs``: ``--level``, ``--step``, ``--grep``, ``--since``.

They are checked here, so a bad one is one ``error:`` line before any request,
and applied by the server (``GET .../logs?level=&grep=&since=``), so only the
lines that pass travel.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import typer

from ..errors import InvalidInput

LEVELS = ("debug", "stdout", "info", "stderr", "warning", "error")

LevelOption = Annotated[
    str | None,
    typer.Option(
        "--level",
        help="Only this level and above: debug < info (and stdout) < warning (and stderr) < error.",
    ),
]
StepOption = Annotated[
    int | None, typer.Option("--step", min=1, help="Only the step with this number (RUN:N).")
]
GrepOption = Annotated[
    str | None, typer.Option("--grep", help="Only lines containing this text (any case).")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only lines since a duration ago (90s, 10m, 2h, 1d) or an "
        "ISO time (2026-01-31T12:00, UTC unless it says).",
    ),
]


def log_filters(level: str | None, grep: str | None, since: str | None) -> dict[str, str | None]:
    """The filters as the API takes them; ``InvalidInput`` naming a bad one."""
    if level is not None and level not in LEVELS:
        raise InvalidInput(f"--level {level!r} is not a level; use one of {', '.join(LEVELS)}")
    if since is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*[smhd]\s*", since):
        try:
            datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"--since {since!r} is neither a duration (90s, 10m, 2h, 1d) nor an ISO time "
                "(2026-01-31T12:00)"
            ) from None
    return {"level": level, "grep": grep, "since": since}
