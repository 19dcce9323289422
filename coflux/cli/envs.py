"""``coflux envs``: the environment tree of a project."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOption, ProjectOption, ServerOption, config, console, print_json

app = typer.Typer(help="Environments of a project.", no_args_is_help=True, rich_markup_mode=None)


@app.command("create")
def create(
    name: str,
    base: Annotated[str | None, typer.Option(help="Base environment to inherit from.")] = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Create an environment, optionally based on another.

    Example:  coflux envs create staging --base production
    """
    from ..local.connection import open_client
    from ..models import validate_environment_name

    validate_environment_name(name)
    with open_client(config(server, project)) as client:
        created = client.create_environment(name, base)
    if json:
        print_json(created)
    else:
        suffix = f" (based on {base})" if base else ""
        console().print(f"Created environment [bold]{name}[/bold]{suffix}")


@app.command("list")
def list_(
    server: ServerOption = None, project: ProjectOption = None, json: JsonOption = False
) -> None:
    """List environments as a tree.

    Example:  coflux envs list --json
    """
    from rich.tree import Tree

    from ..local.connection import open_client

    cfg = config(server, project)
    with open_client(cfg) as client:
        environments = client.list_environments()
    if json:
        print_json(environments)
        return
    tree = Tree(f"[bold]{cfg.project}[/bold]")
    nodes = {}
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
