"""``coflux server``: run the shared server; ``coflux server migrate``: bring its
databases' schema up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOption, console, print_json

app = typer.Typer(rich_markup_mode=None)

DataDirOption = Annotated[
    Path, typer.Option("--data-dir", help="Where projects' databases (SQLite) and blobs live.")
]
BlobStoreOption = Annotated[
    str | None,
    typer.Option(
        "--blob-store",
        envvar="COFLUX_BLOB_STORE",
        help="Keep blobs in object storage (s3://BUCKET/PREFIX; endpoint, region and "
        "credentials from the AWS settings) instead of --data-dir/blobs.",
    ),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="COFLUX_DATABASE_URL",
        help="Keep every project in PostgreSQL (postgresql://USER@HOST/DB), "
        "one schema each, instead of SQLite files in --data-dir.",
    ),
]


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 7777,
    data_dir: DataDirOption = Path(".coflux/server"),
    database_url: DatabaseUrlOption = None,
    agent_timeout: Annotated[
        float,
        typer.Option(
            "--agent-timeout", help="Seconds of silence before an agent's executions are abandoned."
        ),
    ] = 30.0,
    advertise_url: Annotated[
        str | None,
        typer.Option(
            "--advertise-url",
            envvar="COFLUX_ADVERTISE_URL",
            help="With --database-url: the URL other server processes reach this one at "
            "(default http://HOST:PORT).",
        ),
    ] = None,
    start_timeout: Annotated[
        float,
        typer.Option(
            "--start-timeout",
            envvar="COFLUX_START_TIMEOUT",
            help="Seconds after which an execution its agent never received is assigned again.",
        ),
    ] = 10.0,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth",
            envvar="COFLUX_AUTH",
            help="Require a project token (`coflux tokens create`) on every request.",
        ),
    ] = False,
    public_host: Annotated[
        str | None,
        typer.Option(
            "--public-host",
            envvar="COFLUX_PUBLIC_HOST",
            help="The host name clients use, if not a loopback one (Host header check).",
        ),
    ] = None,
    synchronous: Annotated[
        str,
        typer.Option(
            "--synchronous",
            envvar="COFLUX_SYNCHRONOUS",
            help="FULL: an acknowledged change survives power loss; NORMAL: a server crash only.",
        ),
    ] = "FULL",
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Listen beyond loopback without --auth (anyone who can reach it can use it).",
        ),
    ] = False,
    blob_store: BlobStoreOption = None,
) -> None:
    """Run the Coflux server.

    Without --auth it listens only on loopback addresses, unless --insecure.
    Projects' databases are brought to this version's schema first.

    Example:  coflux server --port 7777 --data-dir /var/lib/coflux --auth
    """
    if ctx.invoked_subcommand is not None:
        return
    import logging

    import uvicorn

    from ..errors import ConfigError
    from ..remote.server.app import create_app
    from ..remote.server.settings import Settings

    if agent_timeout <= 0:
        raise ConfigError("--agent-timeout must be a positive number of seconds")
    if start_timeout <= 0:
        raise ConfigError("--start-timeout must be a positive number of seconds")
    synchronous = synchronous.upper()
    if synchronous not in ("FULL", "NORMAL"):
        raise ConfigError(f"--synchronous must be FULL or NORMAL, not {synchronous!r}")
    if not auth and not insecure and not _loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without --auth: anyone who can reach it could "
            "run code on your agents; add --auth (and `coflux tokens create`), or --insecure"
        )
    _usable_data_dir(data_dir)
    from .server_blobs import check_store, store_url

    blob_store = store_url(blob_store)
    check_store(blob_store, data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Forwarded requests (several servers on one database) aren't worth a line each.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        advertise_url=advertise_url,
        host=host,
        port=port,
        agent_timeout=agent_timeout,
        start_timeout=start_timeout,
        auth=auth,
        synchronous=synchronous,
        public_host=public_host,
        insecure=insecure,
        blob_store=blob_store,
    )
    application = create_app(settings)
    application.state.database.migrate_all()
    mode = "tokens required" if auth else "no auth, loopback only" if not insecure else "no auth"
    where = "PostgreSQL" if database_url else str(data_dir)
    if blob_store:
        where += f", blobs in {blob_store}"
    print(f"Coflux server on http://{host}:{port} (data in {where}; {mode})", flush=True)
    try:
        uvicorn.run(application, host=host, port=port, log_level="warning", ws="websockets-sansio")
    except SystemExit:
        raise ConfigError(
            f"can't listen on {host}:{port}; is another server using the port?"
        ) from None


def _usable_data_dir(data_dir: Path) -> None:
    """Refuse, before listening, a data directory that can't hold databases and blobs
    (found only at the first request otherwise, as a 500)."""
    import os
    import tempfile

    from ..errors import ConfigError

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=data_dir, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigError(
            f"can't use --data-dir {data_dir}: {reason}; give a directory this user can write"
        ) from None


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command("migrate")
def migrate(
    data_dir: DataDirOption = Path(".coflux/server"),
    database_url: DatabaseUrlOption = None,
    json: JsonOption = False,
) -> None:
    """Bring every project's database to this version's schema, then exit
    (`coflux server` does the same when it starts).

    Example:  coflux server migrate --data-dir /var/lib/coflux
    """
    from ..remote.server.db import open_database
    from ..remote.server.schema import HEAD

    _usable_data_dir(data_dir)
    database = open_database(database_url, data_dir / "projects", "FULL")
    try:
        changed = database.migrate_all()
    finally:
        database.close()
    if json:
        print_json({"schema": HEAD, "migrated": changed})
        return
    for project, revision in changed.items():
        console().print(f"{project}: schema {revision} → {HEAD}")
    console().print(f"Every project is at schema {HEAD}.")


# Registered here so `coflux server --help` lists them; their code is in server_blobs.
from . import server_blobs  # noqa: E402

app.command("gc")(server_blobs.gc)
app.add_typer(server_blobs.blobs_app, name="blobs")
