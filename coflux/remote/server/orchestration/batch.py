"""Group commit: stage rows in memory, write them in one transaction per loop tick.

Everything a project's orchestrator changes in one pass of the event loop is
written in a single transaction; callbacks that tell the outside world (an
acknowledgement, an ``execute`` message, a waiting caller's result) run only
after that transaction has committed (invariant I3).

Only a transaction that releases an acknowledgement (a response that accepts
something, a result told to its caller) waits for the disk (``synchronous=FULL``
on SQLite, ``synchronous_commit`` on PostgreSQL). One that releases none (a
plain call's new step and its ``execute``, a ``started`` report) is committed
without waiting for the disk: both databases write their log in order, so the
next acknowledging commit makes it durable too, and a power cut before that
loses only what nobody was told was kept (the durability statement of
docs/reliability.md holds). A plain call then costs one fsync, not two.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from itertools import groupby
from typing import Any

from sqlalchemy import JSON, Connection, Engine, Table, bindparam, update

from ..lease import LeaseLost

log = logging.getLogger("coflux.server")


def _storable(value: Any) -> Any:
    """PostgreSQL's text can't hold NUL, which a task's output or an API caller
    may send; it becomes U+FFFD, as undecodable bytes do, on every backend."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


class Batch:
    def __init__(
        self,
        engine: Engine,
        tables: list[Table],
        guard: Callable[[Connection], None] | None = None,
    ) -> None:
        self._engine = engine
        #: Run first in every write transaction; raises to refuse the write (a
        #: server that lost its project's lease, see ``lease.Leases.check``).
        self._guard = guard
        # Inserts are written table by table in dependency order, then updates
        # in the order they were made (an update only touches a row that exists).
        self._tables = tables
        self._inserts: dict[Table, list[dict[str, Any]]] = {}
        self._updates: list[tuple[Table, Any, dict[str, Any]]] = []
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        #: Whether what is staged releases an acknowledgement (see above).
        self._durable = False
        #: SQLite's configured ``synchronous`` level, and the writer's current one.
        self._synchronous: int | None = None
        self._current: int | None = None
        self._scheduled = False
        self._connection: Connection | None = None
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, list[str], set[str]]] = {}
        #: Called at the start of every flush; may stage more rows.
        self.before_flush: Callable[[], None] | None = None

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        self._inserts.setdefault(table, []).append(row)
        self.schedule()

    def update(self, table: Table, id: Any, **values: Any) -> None:
        self._updates.append((table, id, values))
        self.schedule()

    def after_commit(self, callback: Callable[[], None], durable: bool = True) -> None:
        """Run ``callback`` once what is staged is committed; ``durable=False``
        when it acknowledges nothing (it needn't wait for the disk)."""
        self._callbacks.append(callback)
        self._durable |= durable
        self.schedule()

    async def committed(self, durable: bool = True) -> None:
        """Wait until everything staged so far is committed; ``durable=False``
        when the caller then acknowledges nothing."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._durable |= durable
        self.schedule()
        await future

    def _insert_sql(self, table: Table) -> tuple[str, list[str], set[str]]:
        """Compiled once per table: plain SQL and parameters skip SQLAlchemy's per-call work."""
        key = (table.name, ())
        if key not in self._compiled:
            columns = [c.name for c in table.columns]
            statement = table.insert().values({c: bindparam(c) for c in columns})
            self._compiled[key] = self._compile(table, statement, columns)
        return self._compiled[key]

    def _update_sql(
        self, table: Table, columns: tuple[str, ...]
    ) -> tuple[str, list[str], set[str]]:
        """Compiled once per table and set of columns, like inserts."""
        key = (table.name, columns)
        if key not in self._compiled:
            statement = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({c: bindparam(c) for c in columns})
            )
            self._compiled[key] = self._compile(table, statement, [*columns, "row_id"])
        return self._compiled[key]

    def _compile(
        self, table: Table, statement: Any, names: list[str]
    ) -> tuple[str, list[str], set[str]]:
        compiled = statement.compile(dialect=self._engine.dialect)
        order = list(compiled.positiontup or []) if compiled.positional else names
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        return str(compiled), order, json_columns

    def _parameters(self, compiled: tuple[str, list[str], set[str]], row: dict[str, Any]) -> Any:
        _, order, json_columns = compiled
        values = {
            c: (
                json.dumps(row.get(c))
                if c in json_columns and row.get(c) is not None
                else _storable(row.get(c))
            )
            for c in order
        }
        return tuple(values[c] for c in order) if self._engine.dialect.positional else values

    def _write(
        self,
        inserts: dict[Table, list[dict[str, Any]]],
        updates: list[tuple[Table, Any, dict[str, Any]]],
        one_by_one: bool,
        durable: bool = True,
    ) -> None:
        if self._engine.dialect.name != "sqlite":
            # A shared pool (PostgreSQL): the connection goes back after each
            # commit, so a server of many projects holds one per active writer.
            with self._engine.connect() as connection, connection.begin():
                if not durable:
                    connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                self._statements(connection, inserts, updates, one_by_one)
            return
        # SQLite: one long-lived connection for the single writer (no pool round trip).
        if self._connection is None or self._connection.closed:
            self._connection = self._engine.connect()
            self._current = None
        with self._connection.begin():
            # Before the first write, so before the transaction's BEGIN.
            self._set_synchronous(self._connection, durable)
            self._statements(self._connection, inserts, updates, one_by_one)

    def _set_synchronous(self, connection: Connection, durable: bool) -> None:
        if self._current is None:
            self._current = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            self._synchronous = self._current
        assert self._synchronous is not None
        # NORMAL (1) at most for a commit that acknowledges nothing.
        wanted = self._synchronous if durable else min(self._synchronous, 1)
        if wanted != self._current:
            connection.exec_driver_sql(f"PRAGMA synchronous={wanted}")
            self._current = wanted

    def _statements(
        self,
        connection: Connection,
        inserts: dict[Table, list[dict[str, Any]]],
        updates: list[tuple[Table, Any, dict[str, Any]]],
        one_by_one: bool,
    ) -> None:
        if self._guard is not None:
            self._guard(connection)
        for table in self._tables:
            if table not in inserts:
                continue
            compiled = self._insert_sql(table)
            rows = [self._parameters(compiled, row) for row in inserts[table]]
            if not one_by_one:
                connection.exec_driver_sql(compiled[0], rows)
                continue
            for row in rows:
                try:
                    with connection.begin_nested():
                        connection.exec_driver_sql(compiled[0], row)
                except Exception as e:
                    log.error("dropped a write the database refused: %s", e)
        # Runs of updates to the same columns of a table go as one executemany,
        # in the order they were made.
        for (table, columns), run in groupby(updates, lambda u: (u[0], tuple(u[2]))):
            compiled = self._update_sql(table, columns)
            rows = [self._parameters(compiled, {**values, "row_id": id}) for _, id, values in run]
            connection.exec_driver_sql(compiled[0], rows)

    def close(self) -> None:
        self.flush()
        if self._connection is not None:
            self._connection.close()

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self.before_flush is not None:
            # Decisions that follow from this tick's changes (assignments) join
            # the same transaction instead of costing another commit.
            self.before_flush()
        inserts, updates, callbacks = self._inserts, self._updates, self._callbacks
        waiters, durable = self._waiters, self._durable
        self._inserts, self._updates, self._callbacks, self._waiters = {}, [], [], []
        self._durable = False
        try:
            if inserts or updates:
                self._write(inserts, updates, one_by_one=False, durable=durable)
        except LeaseLost as e:
            log.warning("%s: %d change(s) not written", e, len(updates) + len(inserts))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(e)
            return
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
