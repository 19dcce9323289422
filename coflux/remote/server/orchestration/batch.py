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

What is staged is kept in *units*: the changes made since the previous
acknowledgement point (a ``committed()`` or ``after_commit()``), with that
point's waiters and callbacks. A batch the database refuses as a whole (a
full disk, a value it can't hold) is written again unit by unit, each in a
transaction of its own, so a refused unit never takes accepted neighbours
down with it: its waiters get the refusal (see ``..refusals``), its callbacks
never run, and everything later is refused too until the orchestrator,
told through ``on_refused``, has rebuilt its picture from what was stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from itertools import groupby
from typing import Any

from sqlalchemy import JSON, Connection, Engine, Table, bindparam, update

from ....errors import CofluxError
from ..lease import LeaseLost, lost
from ..refusals import StoreUnavailable, missing_reference, refusal

log = logging.getLogger("coflux.server")

#: Seconds an update that releases nothing may wait for a commit to join.
LATER = 0.05


def _storable(value: Any) -> Any:
    """PostgreSQL's text can't hold NUL, which a task's output or an API caller
    may send; it becomes U+FFFD, as undecodable bytes do, on every backend."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


class JSONText(str):
    """A JSON column's value given as its text, written as it is: made once for
    many rows (a target's options, the same for every step of a fan-out)."""


class _Unit:
    """Changes staged up to one acknowledgement point, with what that point releases."""

    __slots__ = ("inserts", "updates", "callbacks", "waiters")

    def __init__(self) -> None:
        self.inserts: dict[Table, list[dict[str, Any]]] = {}
        self.updates: list[tuple[Table, Any, dict[str, Any]]] = []
        self.callbacks: list[Callable[[], None]] = []
        self.waiters: list[asyncio.Future[None]] = []


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
        #: Closed units, oldest first, and the open one that new changes join.
        self._units: list[_Unit] = []
        self._open = _Unit()
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
        #: Called once, the first time the database refuses a unit: what is in
        #: memory no longer matches what is stored.
        self.on_refused: Callable[[CofluxError], None] | None = None
        #: Set once a unit was refused: every later write is refused with it.
        self.refused: CofluxError | None = None
        #: The timer that commits what ``update_later`` staged, if nothing else does.
        self._later: asyncio.TimerHandle | None = None

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        self._open.inserts.setdefault(table, []).append(row)
        self.schedule()

    def update(self, table: Table, id: Any, **values: Any) -> None:
        self._open.updates.append((table, id, values))
        self.schedule()

    def update_later(self, table: Table, id: Any, **values: Any) -> None:
        """An update that releases nothing: it joins the next commit, or has one
        of its own after ``LATER`` seconds. A ``started`` report in a chain of
        calls then goes in its task's result's commit (a millisecond later)
        instead of costing a commit (its WAL writes and locks) of its own."""
        self._open.updates.append((table, id, values))
        if self._later is None:
            self._later = asyncio.get_running_loop().call_later(LATER, self._write_later)

    def _write_later(self) -> None:
        self._later = None
        self.schedule()

    def _close_unit(self) -> _Unit:
        unit, self._open = self._open, _Unit()
        self._units.append(unit)
        return unit

    def after_commit(self, callback: Callable[[], None], durable: bool = True) -> None:
        """Run ``callback`` once what is staged is committed; ``durable=False``
        when it acknowledges nothing (it needn't wait for the disk)."""
        self._close_unit().callbacks.append(callback)
        self._durable |= durable
        self.schedule()

    async def committed(self, durable: bool = True) -> None:
        """Wait until everything staged so far is committed; ``durable=False``
        when the caller then acknowledges nothing."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._close_unit().waiters.append(future)
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
        # One pass over the columns, no intermediate dict for positional
        # drivers: three rows per step, so this runs for every row written.
        _, order, json_columns = compiled
        get = row.get
        values = [
            (None if (v := get(c)) is None else v if v.__class__ is JSONText else json.dumps(v))
            if c in json_columns
            else (_storable(v) if isinstance(v := get(c), str) else v)
            for c in order
        ]
        if self._engine.dialect.positional:
            return tuple(values)
        return dict(zip(order, values, strict=True))

    def _write(
        self,
        inserts: dict[Table, list[dict[str, Any]]],
        updates: list[tuple[Table, Any, dict[str, Any]]],
        durable: bool = True,
        exact: bool = False,
    ) -> None:
        if self._engine.dialect.name != "sqlite":
            # A shared pool (PostgreSQL): the connection goes back after each
            # commit, so a server of many projects holds one per active writer.
            with self._engine.connect() as connection:
                if not exact:
                    self._pipelined(connection, inserts, updates, durable)
                    return
                with connection.begin():
                    self._statements(connection, inserts, updates, exact)
            return
        # SQLite: one long-lived connection for the single writer (no pool round trip).
        if self._connection is None or self._connection.closed:
            self._connection = self._engine.connect()
            self._current = None
        with self._connection.begin():
            # Before the first write, so before the transaction's BEGIN.
            self._set_synchronous(self._connection, durable)
            self._statements(self._connection, inserts, updates, exact)

    def _pipelined(
        self,
        connection: Connection,
        inserts: dict[Table, list[dict[str, Any]]],
        updates: list[tuple[Table, Any, dict[str, Any]]],
        durable: bool,
    ) -> None:
        """PostgreSQL: the whole transaction in one round trip. In psycopg's
        pipeline mode its statements (the lease check, every row's prepared
        insert or update, the COMMIT) are sent together and answered at the
        commit; the first one refused aborts the transaction, and the commit
        raises its error. Each statement a round trip cost a network wait
        each (six per commit in a 10,000-task fan-out), on the event loop."""
        raw: Any = connection.connection.driver_connection  # psycopg's own connection
        try:
            with raw.pipeline():
                cursor = raw.cursor()
                if not durable:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
                if self._guard is not None:
                    self._guard(connection)
                for table in self._tables:
                    if table in inserts:
                        compiled = self._insert_sql(table)
                        rows = [self._parameters(compiled, row) for row in inserts[table]]
                        cursor.executemany(compiled[0], rows)
                for (table, columns), run in groupby(updates, lambda u: (u[0], tuple(u[2]))):
                    compiled = self._update_sql(table, columns)
                    rows = [
                        self._parameters(compiled, {**values, "row_id": id})
                        for _, id, values in run
                    ]
                    cursor.executemany(compiled[0], rows)
                raw.commit()
        except BaseException as e:
            try:
                if not (raw.closed or raw.broken):
                    raw.rollback()
            except Exception:
                pass  # the connection died meanwhile: invalidated below
            if raw.closed or raw.broken:
                connection.invalidate()  # not back into the pool
            refused = lost(e)
            if refused is not None:
                raise refused from None
            raise

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
        exact: bool,
    ) -> None:
        """With ``exact``, each update must find its row: one that finds none
        depends on a change of an earlier unit that was refused."""
        if self._guard is not None:
            self._guard(connection)
        for table in self._tables:
            if table not in inserts:
                continue
            compiled = self._insert_sql(table)
            rows = [self._parameters(compiled, row) for row in inserts[table]]
            connection.exec_driver_sql(compiled[0], rows)
        # Runs of updates to the same columns of a table go as one executemany,
        # in the order they were made.
        for (table, columns), run in groupby(updates, lambda u: (u[0], tuple(u[2]))):
            compiled = self._update_sql(table, columns)
            rows = [self._parameters(compiled, {**values, "row_id": id}) for _, id, values in run]
            if not exact:
                connection.exec_driver_sql(compiled[0], rows)
                continue
            for row in rows:
                if connection.exec_driver_sql(compiled[0], row).rowcount == 0:
                    raise StoreUnavailable(
                        f"a change this depends on was refused (no {table.name} row to update)"
                    )

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
        if self._later is not None:  # written now
            self._later.cancel()
            self._later = None
        if self.before_flush is not None and self.refused is None:
            # Decisions that follow from this tick's changes (assignments) join
            # the same transaction instead of costing another commit.
            self.before_flush()
        self._close_unit()
        units, durable = self._units, self._durable
        self._units, self._durable = [], False
        if self.refused is not None:
            self._refuse(units, self.refused)
            return
        inserts: dict[Table, list[dict[str, Any]]] = {}
        updates: list[tuple[Table, Any, dict[str, Any]]] = []
        for unit in units:
            for table, rows in unit.inserts.items():
                inserts.setdefault(table, []).extend(rows)
            updates.extend(unit.updates)
        try:
            if inserts or updates:
                self._write(inserts, updates, durable=durable)
        except LeaseLost as e:
            log.warning("%s: %d change(s) not written", e, len(updates) + len(inserts))
            for unit in units:
                for waiter in unit.waiters:
                    if not waiter.done():
                        waiter.set_exception(e)
            return
        except Exception as e:
            log.warning("the database refused a commit (%s); writing it unit by unit", e)
            self._write_units(units)
            return
        for unit in units:
            self._release(unit)

    def _write_units(self, units: list[_Unit]) -> None:
        """Each unit in a transaction of its own: what the database takes is
        acknowledged, what it refuses is answered with the refusal."""
        first: CofluxError | None = None
        for unit in units:
            if not unit.inserts and not unit.updates:
                if first is None:
                    self._release(unit)
                else:
                    self._refuse([unit], first)
                continue
            try:
                self._write(unit.inserts, unit.updates, durable=True, exact=True)
            except LeaseLost as e:
                self._refuse([unit], e)
                continue
            except Exception as e:
                error = refusal(e)
                if first is not None and missing_reference(e):
                    # Refused for want of a row an earlier refused unit held:
                    # that earlier refusal is the reason.
                    error = first
                log.error("refused %d change(s): %s", _size(unit), error)
                first = first or error
                self._refuse([unit], error)
                continue
            self._release(unit)
        if first is not None:
            self.refused = first
            if self.on_refused is not None:
                self.on_refused(first)

    def _release(self, unit: _Unit) -> None:
        for waiter in unit.waiters:
            if not waiter.done():
                waiter.set_result(None)
        for callback in unit.callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    @staticmethod
    def _refuse(units: list[_Unit], error: Exception) -> None:
        for unit in units:
            for waiter in unit.waiters:
                if not waiter.done():
                    waiter.set_exception(error)


def _size(unit: _Unit) -> int:
    return sum(len(rows) for rows in unit.inserts.values()) + len(unit.updates)
