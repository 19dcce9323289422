"""Assets of a project: recorded once their blobs are on the server, listed per run.

The record of one (``AssetRecords``, the orchestrator's part that writes it) and
the read queries of ``routes/assets.py``. The manifest itself is a blob; a row
here says which execution persisted it, from which path, with how many files
and bytes, so ``coflux assets list RUN`` needs no blob read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from ....assets import PREFIX, Entry
from ..tables import T_ASSET, T_EXECUTION, T_STEP
from .batch import Batch
from .clock import Clock
from .ids import IdAllocator
from .index import LiveIndex


class AssetRecords:
    def __init__(self, batch: Batch, ids: IdAllocator, clock: Clock, index: LiveIndex) -> None:
        self.batch = batch
        self.ids = ids
        self.clock = clock
        self.index = index

    async def record_asset(
        self, key: str, entries: list[Entry], path: str, execution: str | None
    ) -> dict[str, Any]:
        """Record an asset whose manifest (``key``) and blobs the server holds."""
        execution_id = self.index.execution_id(execution) if execution is not None else None
        files, size = len(entries), sum(e.size for e in entries)
        self.batch.insert(
            T_ASSET,
            {
                "id": self.ids.new("assets"),
                "ref": key,
                "execution_id": execution_id,
                "path": path,
                "files": files,
                "size": size,
                "created_at": self.clock.time(),
            },
        )
        await self.batch.committed()
        return {"ref": f"{PREFIX}{key}", "path": path, "files": files, "size": size}


def run_assets(c: Connection, run_id: str) -> list[dict[str, Any]]:
    """The assets persisted by a run's executions, oldest first."""
    rows = c.execute(
        select(T_ASSET, T_STEP.c.number, T_EXECUTION.c.attempt)
        .join(T_EXECUTION, T_EXECUTION.c.id == T_ASSET.c.execution_id)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_STEP.c.run_id == run_id)
        .order_by(T_ASSET.c.id)
    )
    return [
        {
            "ref": f"{PREFIX}{row.ref}",
            "step": f"{run_id}:{row.number}",
            "execution": f"{run_id}:{row.number}:{row.attempt}",
            "path": row.path,
            "files": row.files,
            "size": row.size,
        }
        for row in rows
    ]


def asset_records(c: Connection, key: str) -> list[dict[str, Any]]:
    """Where an asset was persisted (executions and paths)."""
    rows = c.execute(
        select(T_ASSET.c.path, T_STEP.c.run_id, T_STEP.c.number, T_EXECUTION.c.attempt)
        .outerjoin(T_EXECUTION, T_EXECUTION.c.id == T_ASSET.c.execution_id)
        .outerjoin(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_ASSET.c.ref == key)
        .order_by(T_ASSET.c.id)
    )
    return [
        {
            "path": row.path,
            "execution": f"{row.run_id}:{row.number}:{row.attempt}" if row.run_id else None,
        }
        for row in rows
    ]
