"""The mirror: the runs this workspace made or looked at, kept so they can be shown offline.

Every ``runs show`` and ``runs list`` that reaches the server stores what it
got in ``.coflux/state.db``; when the server is unreachable they answer from
here (:func:`or_mirrored`, the one place that falls back) and say how old the
copy is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..errors import ServerUnreachable
from .config import Config
from .state_connection import reading, writing

# Plain sqlite3 (see ``state_connection``): the tables are ``state.MirroredRun``
# and ``state.MirroredRunList``; their JSON columns hold ``json.dumps`` text,
# as SQLAlchemy's JSON type writes it.


T = TypeVar("T")


@dataclass(frozen=True)
class Read(Generic[T]):
    """What a read found: from the server, or the mirror's copy when it was unreachable."""

    value: T
    #: When the mirror's copy was fetched from the server; None for the server's answer.
    mirrored_at: float | None = None


def or_mirrored(fetch: Callable[[], T], load: Callable[[], tuple[T, float] | None]) -> Read[T]:
    """``fetch()`` from the server; when the server is unreachable, what the mirror
    holds (``load()``), or the same ``ServerUnreachable`` when it holds nothing."""
    try:
        return Read(fetch())
    except ServerUnreachable:
        found = load()
        if found is None:
            raise
        return Read(found[0], found[1])


def _key(config: Config) -> tuple[str, str]:
    return config.server or "embedded", config.project


def save_run(config: Config, document: dict[str, Any]) -> None:
    with writing(config.data_dir) as c:
        c.execute(
            "INSERT INTO runs (server, project, id, view, document, fetched_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (server, project, id, view) "
            "DO UPDATE SET document = excluded.document, fetched_at = excluded.fetched_at",
            (
                *_key(config),
                document["id"],
                document.get("view") or "",
                json.dumps(document),
                time.time(),
            ),
        )


def load_run(config: Config, run_id: str, view: str | None) -> tuple[dict[str, Any], float] | None:
    """The mirrored document of a run (as ``view`` saw it, else its newest copy)."""
    if not (config.data_dir / "state.db").exists():
        return None
    with reading(config.data_dir) as c:
        assert c is not None
        rows = c.execute(
            "SELECT document, view, fetched_at FROM runs WHERE server = ? AND project = ? "
            "AND id = ? ORDER BY fetched_at DESC",
            (*_key(config), run_id),
        ).fetchall()
    if not rows:
        return None
    document, _, fetched_at = next((r for r in rows if r[1] == view), rows[0])
    return json.loads(document), fetched_at


def save_list(config: Config, environment: str, runs: list[dict[str, Any]]) -> None:
    with writing(config.data_dir) as c:
        c.execute(
            "INSERT INTO run_lists (server, project, environment, runs, fetched_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (server, project, environment) "
            "DO UPDATE SET runs = excluded.runs, fetched_at = excluded.fetched_at",
            (*_key(config), environment, json.dumps(runs), time.time()),
        )


def load_list(config: Config, environment: str) -> tuple[list[dict[str, Any]], float] | None:
    if not (config.data_dir / "state.db").exists():
        return None
    with reading(config.data_dir) as c:
        assert c is not None
        row = c.execute(
            "SELECT runs, fetched_at FROM run_lists WHERE server = ? AND project = ? "
            "AND environment = ?",
            (*_key(config), environment),
        ).fetchone()
    return (json.loads(row[0]), row[1]) if row else None


def stale_notice(fetched_at: float) -> str:
    when = datetime.fromtimestamp(fetched_at).strftime("%Y-%m-%d %H:%M:%S")
    return f"offline: the server is unreachable; showing the local copy from {when} (may be stale)"
