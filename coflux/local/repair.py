"""Repairing ``.coflux/state.db``: set the damaged file aside, carry over what reads, start anew.

The state database holds nothing the shared server needs to keep its own
contents: the queue (operations not sent yet), copies of runs (the mirror,
the pulled runs) and bookkeeping (branches, what was pushed). A damaged file
is renamed, never deleted, beside it (``state.db.damaged-<time>``); every
queued operation and branch mapping that can still be read from it is copied
into a new database with its idempotency key, so sending it later still
applies it once; the rest refills from the server (``runs show``, ``sync
--pull``; a run pushed before is pushed again as a no-op).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from . import state
from .config import Config

_SUFFIXES = ("", "-wal", "-shm")


def check(data_dir: Path) -> str | None:
    """Why the state database is damaged, or None when it reads whole."""
    path = data_dir / "state.db"
    if not path.exists():
        return None
    try:
        with state.engine(data_dir).connect() as c:
            verdict = c.execute(text("PRAGMA quick_check")).scalar()
    except state.StateDamaged as e:
        return str(e)
    return None if verdict == "ok" else f"{path} is damaged ({verdict})"


def repair(config: Config, rebuild: bool = False) -> dict[str, Any]:
    """Set a damaged (or, with ``rebuild``, any) state database aside and start a new one."""
    data_dir = config.data_dir
    path = data_dir / "state.db"
    problem = check(data_dir)
    if problem is None and not rebuild:
        return {"damaged": False, "set_aside": None, "queued": 0, "branches": 0}
    state.dispose(data_dir)
    aside = data_dir / f"state.db.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    if path.exists() or path.is_dir():
        for suffix in _SUFFIXES:
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(Path(f"{aside}{suffix}"))
    queued, branches = _salvage(aside) if aside.is_file() else ([], [])
    (data_dir / state.MARKER).unlink(missing_ok=True)  # a new file is expected, not a loss
    with state.writing(data_dir) as c:
        for row in queued:
            c.execute(state.T_OUTBOX.insert().values(**row))
        for row in branches:
            c.execute(state.T_BRANCHES.insert().values(**row))
    return {
        "damaged": problem is not None,
        "set_aside": str(aside) if aside.exists() else None,
        "queued": len(queued),
        "branches": len(branches),
    }


def _salvage(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The queued operations and branch mappings still readable in ``path``."""
    import json

    queued: list[dict[str, Any]] = []
    branches: list[dict[str, Any]] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return queued, branches
    with contextlib.closing(db):
        with contextlib.suppress(sqlite3.Error):
            # Row by row: a damaged page ends the read there, keeping what came before.
            for row in db.execute(
                "SELECT server, project, operation, payload, idempotency_key, created_at "
                "FROM outbox WHERE done_at IS NULL ORDER BY id"
            ):
                server, project, operation, payload, key, created = row
                try:
                    decoded = json.loads(payload)
                except (TypeError, ValueError):
                    continue
                queued.append(
                    {
                        "server": server,
                        "project": project,
                        "operation": operation,
                        "payload": decoded,
                        "idempotency_key": key,
                        "created_at": created,
                    }
                )
        with contextlib.suppress(sqlite3.Error):
            for row in db.execute(
                "SELECT server, project, branch, environment, updated_at FROM branches"
            ):
                branches.append(
                    dict(
                        zip(
                            ("server", "project", "branch", "environment", "updated_at"),
                            row,
                            strict=True,
                        )
                    )
                )
    return queued, branches
