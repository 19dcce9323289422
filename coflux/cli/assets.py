"""``coflux assets`` and ``coflux cache``: persisted files, and the machine's store."""

from __future__ import annotations

from pathlib import Path
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

app = typer.Typer(
    help="Files and directories persisted by executions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
cache_app = typer.Typer(
    help="The machine's content-addressed store (.coflux/cas).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
def list_assets(
    run: str,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """The assets a run's executions persisted.

    Example:  coflux assets list 7K2QF9XH3M
    """
    from rich.table import Table

    from ..local.connection import open_client
    from ..records.references import parse_reference, run_of

    run_id = run_of(parse_reference(run))
    with open_client(config(server, project, derive=False)) as client:
        assets = client.run_assets(run_id)
    if json:
        print_json(assets)
        return
    if not assets:
        console().print(f"Run {run_id} persisted no assets.")
        return
    table = Table("REF", "STEP", "PATH", "FILES", "SIZE", box=None)
    for asset in assets:
        table.add_row(
            asset["ref"], asset["step"], asset["path"], str(asset["files"]), _size(asset["size"])
        )
    console().print(table)


@app.command("show")
def show(
    ref: str,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """An asset's files as a tree, with their sizes.

    Example:  coflux assets show a:4f9c2a61d7e03b85a1c6f0d2e9b47a13
    """
    from ..local.assets import show_asset

    cfg = config(server, project, derive=False)
    asset = show_asset(cfg, ref, lambda: _client(cfg))
    if json:
        print_json(asset)
        return
    console().print(_tree(asset))


@app.command("restore")
def restore(
    ref: str,
    to: Annotated[
        Path | None, typer.Option(help="Directory to restore into (default: the current one).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite files that already exist.")] = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Restore an asset's files, from the local store when it has them all (the
    server isn't needed), else from the server.

    Example:  coflux assets restore a:4f9c2a61d7e03b85a1c6f0d2e9b47a13 --to data/
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    from ..local.assets import restore_asset

    cfg = config(server, project, derive=False)

    def warn(text: str) -> None:
        err_console().print(text, soft_wrap=True, markup=False)

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console(),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if json or total < 8 * 1024 * 1024:
            return  # small assets restore in a blink: no bar
        if not tasks:
            bar.start()
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done)

    try:
        restored = restore_asset(
            cfg, ref, to or Path.cwd(), force, lambda: _client(cfg), progress, warn
        )
    finally:
        if tasks:
            bar.stop()
    if json:
        print_json(restored)
        return
    source = "the local store" if restored["from"] == "local" else "the server"
    console().print(
        f"Restored {restored['ref']}: {restored['files']} file(s), {_size(restored['size'])} "
        f"into {restored['to']} (from {source})",
        soft_wrap=True,
    )


@cache_app.command("stats")
def stats(
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """How much the machine's store holds, and how much of it the index still uses.

    Example:  coflux cache stats --json
    """
    from ..local.index import stats as store_stats

    report = store_stats(config(server, project, derive=False).data_dir)
    if json:
        print_json(report)
        return
    console().print(
        f"{report['path']}: {report['blobs']} blobs, {_size(report['bytes'])}; "
        f"indexed: {report['indexed']['results']} result(s), {report['indexed']['assets']} "
        f"asset(s); {report['unreferenced_blobs']} blob(s) not referenced",
        soft_wrap=True,
    )


@cache_app.command("gc")
def gc(
    dry_run: Annotated[bool, typer.Option(help="Say what would go, remove nothing.")] = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Remove local blobs the index no longer names (keeping those written in the
    last hour, which a running execution may still use).

    Example:  coflux cache gc --dry-run
    """
    from ..local.index import collect_garbage

    report = collect_garbage(config(server, project, derive=False).data_dir, dry_run)
    if json:
        print_json(report)
        return
    verb = "Would remove" if dry_run else "Removed"
    console().print(f"{verb} {report['removed']} blob(s), {_size(report['bytes'])}")


def _client(cfg: Any) -> Any:
    from ..local.connection import open_client

    return open_client(cfg)


def _tree(asset: dict[str, Any]) -> Any:
    from rich.tree import Tree

    root = Tree(f"[bold]{asset['ref']}[/bold]  {asset['files']} file(s), {_size(asset['size'])}")
    branches: dict[str, Any] = {"": root}
    for entry in asset["entries"]:
        parts = entry["path"].split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in branches:
                branches[folder] = branches["/".join(parts[: depth - 1])].add(
                    f"{parts[depth - 1]}/"
                )
        branches["/".join(parts[:-1])].add(f"{parts[-1]}  [dim]{_size(entry['size'])}[/dim]")
    return root


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
