"""Opening a project's database: one SQLite file per project, in WAL mode.

The orchestrator writes through one long-lived connection; read-only API
handlers use pooled connections, which WAL lets run beside the writer.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text

from .tables import metadata

log = logging.getLogger("coflux.server")


def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    mode = cursor.fetchone()[0]
    if mode.lower() != "wal":
        # Some network filesystems silently refuse WAL; readers would then block the writer.
        log.warning(
            "SQLite refused WAL mode (journal_mode=%s); expect slower concurrent reads", mode
        )
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_project_database(path: Path) -> Engine:
    """Open (creating if needed) the database file of one project."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False},
        pool_size=8,
        max_overflow=8,
    )
    event.listen(engine, "connect", _configure)
    metadata.create_all(engine)
    return engine


def journal_mode(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("PRAGMA journal_mode")).scalar())
