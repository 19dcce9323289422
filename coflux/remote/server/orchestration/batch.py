"""Group commit: stage rows in memory, write them in one transaction per loop tick.

Everything a project's orchestrator changes in one pass of the event loop is
written in a single transaction; callbacks that tell the outside world (an
acknowledgement, an ``execute`` message, a waiting caller's result) run only
after that transaction has committed (invariant I3).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Table, update

log = logging.getLogger("coflux.server")


class Batch:
    def __init__(self, engine: Engine, tables: list[Table]) -> None:
        self._engine = engine
        # Inserts are written table by table in dependency order, then updates
        # in the order they were made (an update only touches a row that exists).
        self._tables = tables
        self._inserts: dict[Table, list[dict[str, Any]]] = {}
        self._updates: list[tuple[Table, Any, dict[str, Any]]] = []
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        self._inserts.setdefault(table, []).append(row)
        self.schedule()

    def update(self, table: Table, id: Any, **values: Any) -> None:
        self._updates.append((table, id, values))
        self.schedule()

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        self.schedule()

    async def committed(self) -> None:
        """Wait until everything staged so far is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self.schedule()
        await future

    def _write(
        self,
        inserts: dict[Table, list[dict[str, Any]]],
        updates: list[tuple[Table, Any, dict[str, Any]]],
        one_by_one: bool,
    ) -> None:
        statements: list[tuple[Any, Any]] = []
        for table in self._tables:
            if table in inserts:
                if one_by_one:
                    statements.extend((table.insert(), row) for row in inserts[table])
                else:
                    statements.append((table.insert(), inserts[table]))
        for table, id, values in updates:
            statements.append((update(table).where(table.c.id == id).values(**values), None))
        with self._engine.begin() as connection:
            for statement, parameters in statements:
                if not one_by_one:
                    connection.execute(statement, parameters)
                    continue
                try:
                    with connection.begin_nested():
                        connection.execute(statement, parameters)
                except Exception as e:
                    log.error("dropped a write the database refused: %s", e)

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        inserts, updates, callbacks = self._inserts, self._updates, self._callbacks
        waiters = self._waiters
        self._inserts, self._updates, self._callbacks, self._waiters = {}, [], [], []
        try:
            if inserts or updates:
                self._write(inserts, updates, one_by_one=False)
        except Exception:
            # One bad row must not lose the rest: write row by row, each in a
            # savepoint, and drop (and log) only what the database refuses.
            log.exception("batch commit failed; retrying row by row")
            try:
                self._write(inserts, updates, one_by_one=True)
            except Exception as e:
                log.exception("commit failed")
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(e)
                return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")
