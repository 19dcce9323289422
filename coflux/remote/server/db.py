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


SYNCHRONOUS_MODES = ("FULL", "NORMAL")


def _configurer(synchronous: str):  # type: ignore[no-untyped-def]
    def configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        mode = cursor.fetchone()[0]
        if mode.lower() != "wal":
            # Some network filesystems silently refuse WAL; readers would then block the writer.
            log.warning(
                "SQLite refused WAL mode (journal_mode=%s); expect slower concurrent reads", mode
            )
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return configure


def open_project_database(path: Path, synchronous: str = "FULL") -> Engine:
    """Open (creating if needed) the database file of one project.

    The orchestrator commits a loop pass's changes in one transaction, so
    ``synchronous=FULL`` costs one fsync per batch of events, not per task.
    """
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False},
        pool_size=8,
        max_overflow=8,
    )
    event.listen(engine, "connect", _configurer(synchronous))
    metadata.create_all(engine)
    return engine


def durability(engine: Engine) -> dict[str, str]:
    """What the database really does (SQLite may refuse WAL without an error)."""
    with engine.connect() as connection:
        mode = str(connection.execute(text("PRAGMA journal_mode")).scalar())
        level = int(connection.execute(text("PRAGMA synchronous")).scalar() or 0)
    return {"journal_mode": mode, "synchronous": ["OFF", "NORMAL", "FULL", "EXTRA"][level]}
