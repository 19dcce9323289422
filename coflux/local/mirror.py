"""The mirror: the runs this workspace made or looked at, kept so they can be shown offline.

Every ``runs show`` and ``runs list`` that reaches the server stores what it
got in ``.coflux/state.db``; when the server is unreachable they answer from
here and say how old the copy is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert

from . import state
from .config import Config


def _key(config: Config) -> dict[str, str]:
    return {"server": config.server or "embedded", "project": config.project}


def save_run(config: Config, document: dict[str, Any]) -> None:
    row = {**_key(config), "id": document["id"], "view": document.get("view") or ""}
    values = {"document": document, "fetched_at": state.now()}
    with state.writing(config.data_dir) as c:
        c.execute(
            insert(state.T_RUNS)
            .values(**row, **values)
            .on_conflict_do_update(index_elements=list(row), set_=values)
        )


def load_run(config: Config, run_id: str, view: str | None) -> tuple[dict[str, Any], float] | None:
    """The mirrored document of a run (as ``view`` saw it, else its newest copy)."""
    if not (config.data_dir / "state.db").exists():
        return None
    key = _key(config)
    with state.engine(config.data_dir).connect() as c:
        rows = c.execute(
            select(state.T_RUNS.c.document, state.T_RUNS.c.view, state.T_RUNS.c.fetched_at)
            .where(state.T_RUNS.c.server == key["server"])
            .where(state.T_RUNS.c.project == key["project"])
            .where(state.T_RUNS.c.id == run_id)
            .order_by(state.T_RUNS.c.fetched_at.desc())
        ).all()
    if not rows:
        return None
    chosen = next((r for r in rows if r.view == view), rows[0])
    return chosen.document, chosen.fetched_at


def save_list(config: Config, environment: str, runs: list[dict[str, Any]]) -> None:
    row = {**_key(config), "environment": environment}
    values = {"runs": runs, "fetched_at": state.now()}
    with state.writing(config.data_dir) as c:
        c.execute(
            insert(state.T_RUN_LISTS)
            .values(**row, **values)
            .on_conflict_do_update(index_elements=list(row), set_=values)
        )


def load_list(config: Config, environment: str) -> tuple[list[dict[str, Any]], float] | None:
    if not (config.data_dir / "state.db").exists():
        return None
    key = _key(config)
    with state.engine(config.data_dir).connect() as c:
        row = c.execute(
            select(state.T_RUN_LISTS.c.runs, state.T_RUN_LISTS.c.fetched_at)
            .where(state.T_RUN_LISTS.c.server == key["server"])
            .where(state.T_RUN_LISTS.c.project == key["project"])
            .where(state.T_RUN_LISTS.c.environment == environment)
        ).first()
    return (row.runs, row.fetched_at) if row else None


def stale_notice(fetched_at: float) -> str:
    when = datetime.fromtimestamp(fetched_at).strftime("%Y-%m-%d %H:%M:%S")
    return f"offline: the server is unreachable; showing the local copy from {when} (may be stale)"
