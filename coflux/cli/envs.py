"""``coflux envs``: the environment tree of a project."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import (
    JsonOption,
    NoQueueOption,
    ProjectOption,
    ServerOption,
    config,
    console,
    print_json,
    report_queued,
)

app = typer.Typer(help="Environments of a project.", no_args_is_help=True, rich_markup_mode=None)


@app.command("create")
def create(
    name: str,
    base: Annotated[str | None, typer.Option(help="Base environment to inherit from.")] = None,
    no_queue: NoQueueOption = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Create an environment, optionally based on another.

    With the server unreachable, the creation is queued for `coflux sync`
    (not with --no-queue).

    Example:  coflux envs create staging --base production
    """
    from ..local import operations
    from ..records.names import validate_environment_name

    validate_environment_name(name)
    cfg = config(server, project, derive=False)
    result = operations.create_environment(cfg, name, base, queue=not no_queue)
    if isinstance(result, operations.Queued):
        report_queued(result, json)
        return
    if json:
        print_json(result.answer)
    else:
        suffix = f" (based on {base})" if base else ""
        console().print(f"Created environment [bold]{name}[/bold]{suffix}")


@app.command("update")
def update(
    name: str,
    base: Annotated[str | None, typer.Option(help="New base environment.")] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Remove the base.")] = False,
    new_name: Annotated[str | None, typer.Option("--name", help="Rename the environment.")] = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Rebase, unbase or rename an environment (a base that would make a cycle is refused).

    Example:  coflux envs update staging --base production
    """
    from ..local.connection import open_client

    with open_client(config(server, project, derive=False)) as client:
        updated = client.update_environment(name, base, no_base, new_name)
    if json:
        print_json(updated)
    else:
        suffix = f" (based on {updated['base']})" if updated["base"] else " (no base)"
        console().print(f"Environment [bold]{updated['name']}[/bold]{suffix}")


@app.command("archive")
def archive(
    name: str,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Archive an environment: no new runs or agents; its runs stay readable.

    Example:  coflux envs archive feature/old-idea
    """
    from ..local.connection import open_client

    with open_client(config(server, project, derive=False)) as client:
        archived = client.archive_environment(name)
    if json:
        print_json(archived)
    else:
        console().print(f"Archived environment [bold]{name}[/bold]")


@app.command("list")
def list_(
    server: ServerOption = None, project: ProjectOption = None, json: JsonOption = False
) -> None:
    """List environments as a tree.

    Example:  coflux envs list --json
    """
    from rich.tree import Tree

    from ..local.connection import open_client

    cfg = config(server, project, derive=False)
    with open_client(cfg) as client:
        environments = client.list_environments()
    if json:
        print_json(environments)
        return
    tree = Tree(f"[bold]{cfg.project}[/bold]")
    nodes: dict[str, Tree] = {}
    pending = list(environments)
    while pending:
        progressed = False
        for env in list(pending):
            parent = tree if env["base"] is None else nodes.get(env["base"])
            if parent is not None:
                nodes[env["name"]] = parent.add(env["name"])
                pending.remove(env)
                progressed = True
        if not progressed:
            break
    console().print(tree)


@app.command("manifests")
def manifests(
    name: Annotated[
        str | None,
        typer.Argument(help="Environment (default: the workspace's).", show_default=False),
    ] = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Show what each repository serves in an environment: its targets, the git
    commit it was registered from, whether the tree was dirty, and when.

    A repository not registered in the environment shows its base's registration
    (with that environment's name), as its runs would use it.

    Example:  coflux envs manifests production --json
    """
    from ..local.connection import open_client

    cfg = config(server, project, name)
    with open_client(cfg) as client:
        found = client.list_manifests(cfg.environment)
    if json:
        print_json(found)
        return
    out = console()
    if not found:
        out.print(f"Nothing registered in {cfg.environment} (nor in its bases)", markup=False)
    for r in found:
        commit = "no commit" if r["commit"] is None else r["commit"][:12]
        dirty = " (dirty tree)" if r["dirty"] else ""
        inherited = f" from {r['environment']}" if r["environment"] != cfg.environment else ""
        out.print(
            f"{r['repository']}{inherited}: {commit}{dirty}, registered "
            f"{r['registered_at'][:19].replace('T', ' ')} UTC: {', '.join(r['targets'])}",
            markup=False,
            soft_wrap=True,
        )
