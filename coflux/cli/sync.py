"""``coflux sync`` and ``coflux status``: the workspace's queued work and where it stands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import (
    JsonOption,
    ProjectOption,
    ServerOption,
    config,
    console,
    err_console,
    print_json,
)


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
    """Push the runs made or extended offline on the embedded server, then send
    the operations queued while the server was unreachable, in order, exactly once.

    Each queued operation carries an idempotency key, so a sync that is
    interrupted, or run twice, never applies one twice. An operation leaves
    the queue only when the server has stored it, or refused it for good
    (reported, exit 1); a full disk, a failing server or a dropped connection
    keeps it and what follows it queued (exit 1: run `coflux sync` again).
    Runs made offline keep their IDs on the shared server; a re-run another
    workspace numbered the same is renumbered, never merged; pushing twice
    changes nothing.

    Example:  coflux sync --json
    """
    from ..errors import ConfigError
    from ..local.outbox import Outcome, replay
    from ..local.push import Pushed
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
    base = f"{cfg.server}/projects/{cfg.project}/runs"
    report: list[dict[str, Any]] = []

    def say(line: str) -> None:
        if not json:
            out.print(line, highlight=False, markup=False, soft_wrap=True)

    def on_push(p: Pushed) -> None:
        url = f"{base}/{p.id}?env={p.environment}"
        result = {
            "id": p.id,
            "environment": p.environment,
            "steps": p.steps,
            "executions": p.executions,
            "renumbered": p.renumbered,
            "missing_blobs": p.missing_blobs,
            "url": url,
        }
        report.append(
            {
                "operation": None,
                "description": f"push run {p.id}",
                "result": result if p.status == "pushed" else None,
                "error": p.error,
                "status": p.status,
            }
        )
        if p.status == "pushed":
            say(f"pushed: run {p.id} ({p.environment}, {p.executions} new execution(s))  {url}")
            for old, new in p.renumbered.items():
                say(f"  {old} is {new} on the server (it had another {old})")
            if p.missing_blobs:
                err_console().print(
                    f"warning: run {p.id} was pushed without {len(p.missing_blobs)} blob(s) "
                    f"gone from this machine: {', '.join(p.missing_blobs)}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
        elif p.status == "kept":
            say(f"kept: push run {p.id}: {p.error} (still pending; run `coflux sync` again)")
        else:
            say(f"refused: push run {p.id}: {p.error}")

    def on_outcome(o: Outcome) -> None:
        report.append(
            {
                "operation": o.entry.id,
                "description": o.entry.describe(),
                "result": o.result,
                "error": o.error,
                "status": o.status,
            }
        )
        what = o.entry.describe()
        if o.status == "sent":
            say(f"sent: {what}  {(o.result or {}).get('url') or ''}".rstrip())
        elif o.status == "kept":
            say(f"kept: {what}: {o.error} (still queued; run `coflux sync` again)")
        elif o.status == "set_aside":
            say(f"{o.error}")
        else:
            say(f"refused: {what}: {o.error}")

    with Client(cfg.server, cfg.project, token=cfg.token) as client:
        client.health()  # unreachable: one error line, nothing touched
        waiting = _push(client, cfg, on_push)
        replay(client, cfg, on_outcome)
    for run in waiting:
        report.append(
            {
                "operation": None,
                "description": f"push run {run}",
                "result": None,
                "error": "still running on the embedded server",
                "status": "waiting",
            }
        )
        say(
            f"waiting: run {run} is still running on the embedded server; it is pushed "
            "once it finishes (start `coflux dev` to finish it)"
        )
    if json:
        print_json(report)
    elif not report:
        out.print("Nothing queued.")
    if any(r["status"] in ("refused", "kept", "set_aside") for r in report):
        raise typer.Exit(1)


def _push(client: Any, cfg: Any, on_push: Any) -> list[str]:
    """Runs made or extended on the embedded server (offline), copied to the shared
    one; returns the runs still running there."""
    import dataclasses

    from ..local.connection import open_client
    from ..local.push import push

    if not (cfg.data_dir / "server" / "projects").exists():
        return []
    with open_client(dataclasses.replace(cfg, server=None)) as embedded:
        return [p.id for p in push(client, embedded, cfg, on_push) if p.status == "waiting"]


def _pull(cfg: Any, environment: str, blobs: bool, json: bool) -> None:
    from ..local.replication import pull
    from ..remote.client import Client

    with Client(cfg.server, cfg.project, token=cfg.token) as client:
        pulled = pull(client, cfg, environment, blobs)
    if json:
        print_json(pulled)
    else:
        skipped = pulled["skipped_running"]
        console().print(
            f"Pulled {pulled['runs']} run(s) of {environment} and {pulled['blobs']} blob(s) "
            "for offline work" + (f" ({skipped} still running, not pulled)" if skipped else "")
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
        last = f"  (last refused for now: {entry['last_error']})" if entry["last_error"] else ""
        table.add_row("", entry["description"] + last)
    offline = report["offline_runs"]
    table.add_row("offline runs", f"{len(offline)} not pushed yet")
    for run in offline:
        why = " (still running)" if run["reason"] == "unfinished" else ""
        table.add_row("", f"run {run['id']} in {run['environment']}{why}")
    if report["refused"]:
        table.add_row("refused", f"{len(report['refused'])} (dismiss with `coflux state dismiss`)")
    for refusal in report["refused"]:
        table.add_row("", f"{refusal['description']}: {refusal['error']}")
    for damage in report["damage"]:
        table.add_row("damage", damage["message"])
    table.add_row(
        "local store", f"{store['blobs']} blobs, {store['bytes']:,} bytes in {store['path']}"
    )
    console().print(table)
