"""``coflux projects``: the projects a server hosts."""

from __future__ import annotations

import typer

from .common import JsonOption, ServerOption, config, console, print_json

app = typer.Typer(help="Projects on the server.", no_args_is_help=True, rich_markup_mode=None)


@app.command("create")
def create(name: str, server: ServerOption = None, json: JsonOption = False) -> None:
    """Create a project (with a 'production' environment).

    Example:  coflux projects create analytics
    """
    from ..local.connection import open_client
    from ..records.names import validate_project_name

    validate_project_name(name)
    with open_client(config(server=server, project=name, derive=False)) as client:
        client.create_project(name)
    if json:
        print_json({"name": name})
    else:
        console().print(f"Created project [bold]{name}[/bold]")


@app.command("list")
def list_(server: ServerOption = None, json: JsonOption = False) -> None:
    """List projects.

    Example:  coflux projects list --json
    """
    from ..local.connection import open_client

    with open_client(config(server=server, derive=False)) as client:
        projects = client.list_projects()
    if json:
        print_json(projects)
    else:
        for project in projects:
            console().print(project["name"])
