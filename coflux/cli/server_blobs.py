"""The server's blob store from the command line: choosing it (``--blob-store``),
``coflux server gc`` (remove blobs nothing references) and ``coflux server blobs
migrate`` (copy every blob to another store)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from .common import JsonOption, console, print_json
from .server import BlobStoreOption, DatabaseUrlOption, DataDirOption

blobs_app: typer.Typer = typer.Typer(rich_markup_mode=None, help="The server's blob store.")


def store_url(flag: str | None) -> str | None:
    """The store the flag (or ``COFLUX_BLOB_STORE``) names, else ``blob_store`` in
    the workspace's ``.coflux.toml``, else None (``--data-dir/blobs``)."""
    if flag:
        return flag
    from ..local.config import blob_store_setting

    return blob_store_setting()


def check_store(url: str | None, data_dir: Path) -> None:
    """Refuse to start on a store that can't be reached (one line, not a traceback)."""
    from ..remote.server.blobstores import StoreUnavailable, open_blob_store

    backend = open_blob_store(url, data_dir)
    client = getattr(backend, "client", None)
    if client is None:
        return
    try:
        client.head_bucket(Bucket=backend.bucket)  # type: ignore[attr-defined]
    except Exception as e:
        reason = getattr(e, "response", {}).get("Error", {}).get("Message") or type(e).__name__
        endpoint = client.meta.endpoint_url
        raise ConfigError(
            f"can't use blob store {url} at {endpoint} ({reason}); check the bucket exists "
            "and AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        ) from None
    except StoreUnavailable as e:
        raise ConfigError(str(e)) from None


def _grace(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise ConfigError(f"--grace {text!r} is not a duration: use e.g. 30m, 24h or 7d")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def gc(
    data_dir: DataDirOption = Path(".coflux/server"),
    database_url: DatabaseUrlOption = None,
    blob_store: BlobStoreOption = None,
    grace: Annotated[
        str,
        typer.Option("--grace", help="Keep unreferenced blobs younger than this (30m, 24h, 7d)."),
    ] = "24h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Remove blobs that no stored result, argument, log or asset references any more,
    once older than --grace (safe while the server runs).

    Example:  coflux server gc --data-dir /var/lib/coflux --grace 7d --dry-run
    """
    from ..remote.server.blobstores import open_blob_store
    from ..remote.server.blobstores.retention import collect
    from ..remote.server.db import open_database

    seconds = _grace(grace)
    url = store_url(blob_store)
    check_store(url, data_dir)
    backend = open_blob_store(url, data_dir)
    database = open_database(database_url, data_dir / "projects", "FULL")
    report: dict[str, dict[str, object]] = {}
    try:
        for project in sorted(set(backend.projects()) & set(database.names())):
            engine = database.open(project)
            try:
                report[project] = collect(engine, backend.project(project), seconds, dry_run)
            finally:
                database.release(engine)
    finally:
        database.close()
    if json:
        print_json({"store": backend.url, "dry_run": dry_run, "projects": report})
        return
    verb = "would remove" if dry_run else "removed"
    for project, done in report.items():
        if done["skipped"]:
            console().print(f"{project}: nothing removed: {done['skipped']}")
            continue
        if dry_run:
            for key in done["removed"]:  # type: ignore[attr-defined]
                console().print(f"{project}/{key}")
        console().print(
            f"{project}: {verb} {len(done['removed'])} blob(s), "  # type: ignore[arg-type]
            f"{done['bytes']} bytes; kept {done['kept']}"
        )


@blobs_app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="The store to copy to: s3://BUCKET/PREFIX.")],
    data_dir: DataDirOption = Path(".coflux/server"),
    blob_store: BlobStoreOption = None,
    json: JsonOption = False,
) -> None:
    """Copy every blob of the server's store (default --data-dir/blobs) to another,
    verifying each; safe to run again (blobs already there are skipped).
    Then restart the server with --blob-store set to the new store.

    Example:  coflux server blobs migrate --data-dir /var/lib/coflux --to s3://bucket/coflux
    """
    from ..remote.server.blobstores import open_blob_store
    from ..remote.server.blobstores.moving import migrate as copy_all

    source_url = store_url(blob_store)
    if (source_url or "") == to:
        raise ConfigError(f"--to {to} is the store the blobs are already in")
    check_store(source_url, data_dir)
    check_store(to, data_dir)
    done = copy_all(open_blob_store(source_url, data_dir), open_blob_store(to, data_dir))
    if json:
        print_json(done)
        return
    console().print(
        f"copied {done['copied']} blob(s), {done['bytes']} bytes, from {done['from']} to "
        f"{done['to']}; {done['already_there']} were already there"
    )
    for line in done["corrupt"]:
        console().print(f"not copied (corrupt in the source): {line}")
