"""``coflux sync`` and ``coflux status``: the workspace's queued work and where it stands."""

from __future__ import annotations

from typing import Any

from .common import JsonOption, ProjectOption, ServerOption, config, console, print_json


def sync(
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Send operations queued while the server was unreachable, in order, exactly once.

    Each queued operation carries an idempotency key, so a sync that is
    interrupted, or run twice, never applies one twice. An operation the
    server refuses is reported and dropped from the queue; exit 1 then.

    Example:  coflux sync --json
    """
    import typer

    from ..local.connection import open_client
    from ..local.outbox import Outcome, replay

    cfg = config(server, project, derive=False)
    out = console()

    def show(outcome: Outcome) -> None:
        if json:
            return
        what = outcome.entry.describe()
        if outcome.error is not None:
            out.print(
                f"refused: {what}: {outcome.error}", highlight=False, markup=False, soft_wrap=True
            )
        else:
            result = outcome.result or {}
            link = result.get("url") or ""
            out.print(
                f"sent: {what}  {link}".rstrip(), highlight=False, markup=False, soft_wrap=True
            )

    with open_client(cfg) as client:
        outcomes = replay(client, cfg, show)
    if json:
        print_json(
            [
                {
                    "operation": o.entry.id,
                    "description": o.entry.describe(),
                    "result": o.result,
                    "error": o.error,
                }
                for o in outcomes
            ]
        )
    elif not outcomes:
        out.print("Nothing queued.")
    if any(o.error is not None for o in outcomes):
        raise typer.Exit(1)


def status(
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Show the server (and whether it answers), project, environment, queue and local store.

    Example:  coflux status --json
    """
    from ..local.status import workspace_status

    report = workspace_status(config(server, project, derive=False))
    if json:
        print_json(report)
        return
    _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    from rich.table import Table

    server = report["server"]
    reachable = {True: "reachable", False: "unreachable", None: "embedded"}[server["reachable"]]
    environment = report["environment"]
    derived = environment["source"] + (f" {environment['branch']}" if environment["branch"] else "")
    store = report["store"]
    table = Table(show_header=False, box=None)
    table.add_row("server", f"{server['url']} ({reachable})")
    table.add_row("project", report["project"])
    table.add_row("environment", f"{environment['name'] or '-'} (from {derived})")
    if environment.get("error"):
        table.add_row("", environment["error"])
    table.add_row("queued", f"{len(report['queued'])} operation(s)")
    for entry in report["queued"]:
        table.add_row("", entry["description"])
    table.add_row(
        "local store", f"{store['blobs']} blobs, {store['bytes']:,} bytes in {store['path']}"
    )
    console().print(table)
