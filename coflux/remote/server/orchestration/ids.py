"""Ids of new rows, handed out in memory: the orchestrator is the only writer.

Each table's next id is read once, when the project is loaded (the highest
stored plus one); rows staged but not yet committed already hold theirs.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, func, select

from ..tables import T_ASSET, T_ENV, T_EXECUTION, T_LOG, T_MANIFEST, T_STEP

#: The tables whose ids the orchestrator allocates.
ALLOCATED: tuple[Table, ...] = (T_ENV, T_MANIFEST, T_STEP, T_EXECUTION, T_LOG, T_ASSET)


class IdAllocator:
    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def load(self, c: Connection) -> None:
        for table in ALLOCATED:
            self._next[table.name] = (c.execute(select(func.max(table.c.id))).scalar() or 0) + 1

    def new(self, table: str) -> int:
        value = self._next[table]
        self._next[table] = value + 1
        return value
