"""``coflux tokens``: project tokens for a server run with ``--auth``.

These commands work on the server's data directory, so they run where the
server runs, by whoever runs it; a running server picks up a new or revoked
token within a quarter of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import JsonOption, console, print_json

if TYPE_CHECKING:
    from ..remote.server.tokens import TokenStore

app = typer.Typer(
    help="Project tokens for a server run with --auth.", no_args_is_help=True, rich_markup_mode=None
)

DataDirOption = Annotated[
    Path,
    typer.Option("--data-dir", help="The server's data directory (as given to `coflux server`)."),
]
DEFAULT_DATA_DIR = Path(".coflux/server")
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="COFLUX_DATABASE_URL",
        help="The server's PostgreSQL database (as given to `coflux server`), if it has one.",
    ),
]


def _store(data_dir: Path, database_url: str | None, create: bool = False) -> TokenStore:
    from ..remote.server.tokens import TokenStore

    return TokenStore.open(data_dir, database_url, create)


@app.command("create")
def create(
    project: Annotated[str, typer.Option("--project", help="The project the token opens.")],
    name: Annotated[
        str | None, typer.Option("--name", help="A name to list and revoke it by.")
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
) -> None:
    """Make a token for one project and print it, once (only its hash is kept).

    Example:  coflux tokens create --project analytics --name ci
    """
    token, row = _store(data_dir, database_url, create=True).create(project, name)
    if json:
        print_json({**row, "token": token})
        return
    console().print(f"Token [bold]{row['name']}[/bold] for project {row['project']}:")
    print(token)
    console().print(
        "Shown once: keep it in COFLUX_TOKEN (or `token` in .coflux.toml) where it is used."
    )


@app.command("list")
def list_(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
) -> None:
    """List tokens (names and projects, never the tokens themselves).

    Example:  coflux tokens list --json
    """
    from datetime import datetime

    from rich.table import Table

    from ..remote.server.tokens import TokenStore

    rows = TokenStore.listing(data_dir, database_url)
    if json:
        print_json(rows)
        return
    table = Table("name", "project", "created", "state")
    for row in rows:
        created = datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            row["name"], row["project"], created, "revoked" if row["revoked"] else "active"
        )
    if rows:  # none: nothing printed, like any empty listing
        console().print(table)


@app.command("revoke")
def revoke(
    name: str,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
) -> None:
    """Revoke a token: requests with it are refused, and agents using it are
    disconnected, within a second.

    Example:  coflux tokens revoke ci
    """
    row = _store(data_dir, database_url).revoke(name)
    if json:
        print_json(row)
    else:
        console().print(f"Revoked token [bold]{row['name']}[/bold] ({row['project']})")
