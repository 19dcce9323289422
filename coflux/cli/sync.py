"""``coflux sync`` and ``coflux status``: the workspace's queued work and where it stands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import JsonOption, ProjectOption, ServerOption, config, console, print_json


def sync(
    pull: Annotated[
        str | None,
        typer.Option(
            "--pull",
            metavar="ENV",
            help="Instead, fetch ENV's recent runs and cache entries (and the environment "
            "tree) for offline work.",
            show_default=False,
        ),
    ] = None,
    blobs: Annotated[
        bool, typer.Option("--blobs", help="With --pull, also fetch the blobs behind the values.")
    ] = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Send operations queued while the server was unreachable, in order, exactly
    once, then push the runs made offline on the embedded server.

    Each queued operation carries an idempotency key, so a sync that is
    interrupted, or run twice, never applies one twice. An operation the
    server refuses is reported and dropped from the queue; exit 1 then. Runs
    made offline keep their IDs on the shared server; pushing twice changes
    nothing.

    Example:  coflux sync --json
    """
    from ..errors import ConfigError
    from ..local.outbox import Outcome, replay
    from ..remote.client import Client

    cfg = config(server, project, derive=False)
    if cfg.server is None:
        raise ConfigError(
            "no shared server configured: set server in .coflux.toml or COFLUX_SERVER"
        )
    out = console()
    if pull is not None:
        _pull(cfg, pull, blobs, json)
        return

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

    with Client(cfg.server, cfg.project, token=cfg.token) as client:
        outcomes = replay(client, cfg, show)
        pushed = _push(client, cfg)
    for run in pushed:
        if not json:
            out.print(
                f"pushed: run {run['id']} ({run['environment']}, {run['executions']} new "
                f"execution(s))  {run['url']}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
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
            + [
                {
                    "operation": None,
                    "description": f"push run {run['id']}",
                    "result": run,
                    "error": None,
                }
                for run in pushed
            ]
        )
    elif not outcomes and not pushed:
        out.print("Nothing queued.")
    if any(o.error is not None for o in outcomes):
        raise typer.Exit(1)


def _push(client: Any, cfg: Any) -> list[dict[str, Any]]:
    """Runs made on the embedded server (offline), copied to the shared one."""
    import dataclasses

    from ..local.connection import open_client
    from ..local.replication import push

    if not (cfg.data_dir / "server" / "projects").exists():
        return []
    with open_client(dataclasses.replace(cfg, server=None)) as embedded:
        pushed = push(client, embedded, cfg)
    base = f"{cfg.server}/projects/{cfg.project}/runs"
    return [{**run, "url": f"{base}/{run['id']}?env={run['environment']}"} for run in pushed]


def _pull(cfg: Any, environment: str, blobs: bool, json: bool) -> None:
    from ..local.replication import pull
    from ..remote.client import Client

    with Client(cfg.server, cfg.project, token=cfg.token) as client:
        pulled = pull(client, cfg, environment, blobs)
    if json:
        print_json(pulled)
    else:
        console().print(
            f"Pulled {pulled['runs']} run(s) of {environment} and {pulled['blobs']} blob(s) "
            "for offline work"
        )


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
    derived = " ".join(filter(None, [environment["source"], environment["branch"]])) or "nowhere"
    store = report["store"]
    table = Table(show_header=False, box=None)
    table.add_row("server", f"{server['url']} ({reachable})")
    table.add_row("project", report["project"])
    table.add_row("environment", f"{environment['name'] or '-'} (from {derived})")
    if environment.get("error"):
        table.add_row("", environment["error"])
    for known in report["branches"]:
        table.add_row("", f"branch {known['branch']} → {known['environment']}")
    table.add_row("queued", f"{len(report['queued'])} operation(s)")
    for entry in report["queued"]:
        table.add_row("", entry["description"])
    table.add_row(
        "local store", f"{store['blobs']} blobs, {store['bytes']:,} bytes in {store['path']}"
    )
    console().print(table)
