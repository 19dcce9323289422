"""``coflux logs``: a run's (or a step's) log, filtered by ``--level``, ``--step``,
``--grep`` and ``--since``, and followed with ``--follow``.

The filters are checked here, so a bad one is one ``error:`` line before any
request, and applied by the server (``GET .../logs?level=&grep=&since=``), so
only the lines that pass travel.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import typer

from ..errors import InvalidInput
from .common import JsonOption, ProjectOption, ServerOption, config, console, print_json_array

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


def logs(
    reference: Annotated[
        str, typer.Argument(metavar="RUN-or-STEP", help="A run ID or a step (RUN:N).")
    ],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
    level: LevelOption = None,
    step_number: StepOption = None,
    grep: GrepOption = None,
    since: SinceOption = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Print log messages and captured output of a run or one step.

    Example:  coflux logs 7K2QF9XH3M --level warning --grep timeout --since 1h
    """
    import time

    from ..local.connection import open_client
    from ..local.logs import format_message
    from ..records.references import StepRef, run_of, run_or_step

    target = run_or_step(reference)
    run_key = run_of(target)
    if step_number is not None:  # --step names the step of the run
        target = StepRef(run_key, step_number)
    filters = log_filters(level, grep, since)
    out = console()
    with open_client(config(server, project, derive=False)) as client:

        def messages() -> Iterator[dict[str, Any]]:
            # The next page is asked for while this one is printed: the server
            # reads it meanwhile (a big run's log is a dozen pages of 2 MiB).
            from concurrent.futures import ThreadPoolExecutor

            after = 0
            with ThreadPoolExecutor(1) as ahead:
                page = client.get_logs(target, after, **filters)
                while True:
                    if page:  # pages until an empty one
                        after = page[-1]["id"]
                        following = ahead.submit(client.get_logs, target, after, **filters)
                        yield from page
                        page = following.result()
                        continue
                    if not follow or client.get_run(run_key)["state"] != "running":
                        return
                    time.sleep(0.3)
                    page = client.get_logs(target, after, **filters)

        if json:
            print_json_array({**m, "message": format_message(m)} for m in messages())
            return
        for message in messages():
            level = message["level"]
            style = {"error": "red", "warning": "yellow", "stderr": "red", "debug": "dim"}
            out.print(
                f"[dim]{message['timestamp'][11:23]} {message['execution_id']}[/dim] "
                f"[{style.get(level) or 'default'}]{level:>7}[/] {format_message(message)}",
                markup=True,
                highlight=False,
            )
