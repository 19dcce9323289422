"""Options every command shares, and output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, overload

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ..local.config import Config, Workspace
    from ..local.mirror import Read
    from ..local.operations import Queued

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        "--host",
        help="Server URL, or host:port (default: .coflux.toml, COFLUX_SERVER, else embedded).",
        show_default=False,
    ),
]
ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="Project (default: .coflux.toml, COFLUX_PROJECT, else 'default').",
        show_default=False,
    ),
]
EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "--environment",
        "-e",
        help="Environment (default: COFLUX_ENV, .coflux.toml, else from the git branch).",
        show_default=False,
    ),
]
NoQueueOption = Annotated[
    bool,
    typer.Option(
        "--no-queue",
        help="Fail when the server is unreachable, instead of queueing for `coflux sync`.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document and nothing else on stdout.")
]
ProvidesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--provides",
        metavar="KEY=VALUE",
        help="A placement tag of this agent, for targets' requires= (repeatable; "
        "several values: region=eu,us; "
        "default: provides in .coflux.toml, COFLUX_PROVIDES='gpu=a100,region=eu').",
        show_default=False,
    ),
]


@overload
def config(
    server: str | None = None,
    project: str | None = None,
    env: str | None = None,
    *,
    derive: Literal[True] = True,
    provides: list[str] | None = None,
) -> Workspace: ...
@overload
def config(
    server: str | None = None,
    project: str | None = None,
    env: str | None = None,
    *,
    derive: Literal[False],
    provides: list[str] | None = None,
) -> Config: ...
def config(
    server: str | None = None,
    project: str | None = None,
    env: str | None = None,
    *,
    derive: bool = True,
    provides: list[str] | None = None,
) -> Config:
    """The workspace's configuration: a ``Workspace``, its environment derived from
    git if not given; with ``derive=False``, the plain ``Config`` of a command that
    works without one (its ``environment`` is None unless given)."""
    from ..local.branches import with_environment
    from ..local.config import load_config

    loaded = load_config(server=server, project=project, environment=env, provides=provides)
    return with_environment(loaded) if derive else loaded


def print_json(data: Any) -> None:
    """One JSON document on stdout: indented for a terminal, compact for a pipe
    (``json`` encodes with indentation in pure Python, about ten times slower,
    which a 10,000-step run made the bulk of ``runs show --json``)."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def print_json_array(items: Iterable[Any]) -> None:
    """A JSON array on stdout written item by item as ``items`` yields them, so a
    long listing (a run's logs) is never held whole in memory; shaped as
    ``print_json`` would print the same list."""
    indent = 2 if sys.stdout.isatty() else None
    write = sys.stdout.write
    write("[")
    empty = True
    for item in items:
        text = json.dumps(item, indent=indent, ensure_ascii=False)
        if indent:
            text = "\n" + "\n".join("  " + line for line in text.split("\n"))
        write(text if empty else "," + text)
        empty = False
    write("]\n" if empty or not indent else "\n]\n")


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def check_target(
    client: Any, environment: str, repository: str, target: str, count: int, kind: str = "workflow"
) -> None:
    """Refuse, before submitting, a target of the wrong kind or arguments that don't fit
    (``coflux.local.operations.check_target``, which ``submit`` calls)."""
    from ..local.operations import check_target

    check_target(client, environment, repository, target, count, kind)


def report_queued(queued: Queued, json: bool) -> None:
    """One line (or a JSON document) per entry saying the operation waits for `coflux sync`."""
    from ..local.outbox import QUEUED

    for entry in queued.entries:
        if json:
            print_json({"queued": True, "operation": entry.id, "description": entry.describe()})
        else:
            console().print(
                f"{QUEUED}  ({entry.describe()})", highlight=False, markup=False, soft_wrap=True
            )


def say_stale(read: Read[Any]) -> None:
    """A line on stderr when what is shown is the mirror's copy, which may be stale."""
    from ..local.mirror import stale_notice

    if read.mirrored_at is not None:
        err_console().print(
            stale_notice(read.mirrored_at), highlight=False, markup=False, soft_wrap=True
        )


def to_stderr(line: str) -> None:
    """One plain line on stderr, as it is (no markup, no wrapping)."""
    print(line, file=sys.stderr, flush=True)
