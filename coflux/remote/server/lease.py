"""Which server process orchestrates a project, when several share one PostgreSQL
database.

A project has one orchestrator, its only writer. Its server process holds the
project's *lease*: a PostgreSQL session-level advisory lock, taken on a
connection of its own and held for as long as that connection lives. When the
process dies, PostgreSQL drops the connection and the lock with it, and
another process takes the lease on its next attempt (any request for the
project). The holder's URL is written in ``coflux.leases``, so the other
processes forward the project's requests to it.

Every write transaction of the orchestrator first checks, in the same
transaction, that the lease connection still holds the lock (``check``): a
process that lost its lease (its database connection cut) can't write a
single row more, even before it notices.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, cast

import xxhash
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    create_engine,
    select,
    text,
)
from sqlalchemy.pool import NullPool

from ...errors import CofluxError
from ...records.names import validate_project_name

log = logging.getLogger("coflux.server")

#: The first half of every Coflux advisory lock's key ("Cofl").
LOCK_SPACE = 0x436F666C

_metadata = MetaData()
leases_table = Table(
    "leases",
    _metadata,
    Column("project", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("acquired_at", Float, nullable=False),
)


class LeaseLost(CofluxError):
    """This process no longer holds the project's lease; it must not write."""

    code = "lease_lost"
    status_code = 503


#: The SQLSTATE the database refuses a write transaction with when this process
#: no longer holds the project's lease (class CX: none of PostgreSQL's own).
LEASE_LOST_SQLSTATE = "CX001"


def lost(error: BaseException) -> LeaseLost | None:
    """``LeaseLost`` if the database refused a transaction for the lease (``check``)."""
    orig = getattr(error, "orig", None) or error
    if getattr(orig, "sqlstate", None) != LEASE_LOST_SQLSTATE:
        return None
    primary = getattr(getattr(orig, "diag", None), "message_primary", None)
    return LeaseLost(primary or "this server lost the lease of its project")


def _key(project: str) -> int:
    """The second half of the project's lock key: a signed 32-bit hash of its name."""
    value = xxhash.xxh32_intdigest(project.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


class Leases:
    """The leases of one server process (``holder`` is the URL others reach it by).

    Every lease of the process is a lock on one connection of its own: if that
    connection dies, all of them go at once, as they should (the process lost
    its database), and a server with many projects costs one connection for
    its leases, not one per project.
    """

    def __init__(self, url: str, shared: Engine, holder: str) -> None:
        self.holder = holder
        #: ``coflux.leases``, through an engine whose connections see the ``coflux`` schema.
        self._shared = shared
        _metadata.create_all(shared)
        # The lease connection lives as long as its leases: no pool to hand it back to.
        self._engine = create_engine(url, poolclass=NullPool)
        self._connection: Connection | None = None
        self._pid = 0
        self._held: set[str] = set()
        #: The statement ``check`` runs, by project (it names this connection's pid).
        self._assertions: dict[str, str] = {}
        # Callers come from threads (``asyncio.to_thread``); a connection serves one at a time.
        self._lock = threading.Lock()

    def _execute(self, sql: str, **parameters: Any) -> Any:
        if self._connection is None:
            self._connection = self._engine.connect()
            pid = self._connection.execute(text("SELECT pg_backend_pid()")).scalar()
            self._pid = int(cast(int, pid))  # the query always returns one row
            self._assertions.clear()
            self._connection.commit()
        value = self._connection.execute(text(sql), parameters).scalar()
        self._connection.commit()
        return value

    def acquire(self, project: str) -> bool:
        """Take the project's lease if nobody holds it; true if this process holds it."""
        with self._lock:
            if project in self._held:
                return True
            taken = self._execute(
                "SELECT pg_try_advisory_lock(:space, :key)", space=LOCK_SPACE, key=_key(project)
            )
            if not taken:
                return False
            self._held.add(project)
        with self._shared.begin() as c:
            c.execute(leases_table.delete().where(leases_table.c.project == project))
            c.execute(
                leases_table.insert().values(
                    project=project, holder=self.holder, acquired_at=time.time()
                )
            )
        log.info("holding the lease of project %s", project)
        return True

    def holder_of(self, project: str) -> str | None:
        """Where the project's orchestrator runs, as its holder wrote it."""
        with self._shared.connect() as c:
            row = c.execute(
                select(leases_table.c.holder).where(leases_table.c.project == project)
            ).first()
        return row.holder if row else None

    def check(self, project: str, connection: Connection) -> None:
        """In a write transaction: refuse it unless the lease is still held.

        The database itself refuses (``LEASE_LOST_SQLSTATE``, see ``lost``), so
        the check needs no answer before the writes that follow it: in a
        pipeline (``orchestration.batch``) it travels with them and the
        transaction's commit in one round trip, and a lost lease aborts the
        whole transaction. Outside a pipeline it raises ``LeaseLost`` here."""
        if project not in self._held:
            raise LeaseLost(f"this server doesn't hold the lease of project {project}")
        statement = self._assertions.get(project)
        if statement is None:
            name = validate_project_name(project)
            # Literals, not parameters: a DO block takes none. All three are
            # integers, and the name was validated (letters, digits, '-', '_').
            statement = self._assertions[project] = (
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'"
                f" AND granted AND classid::bigint = {LOCK_SPACE & 0xFFFFFFFF}"
                f" AND objid::bigint = {_key(project) & 0xFFFFFFFF} AND objsubid = 2"
                f" AND pid = {self._pid}) THEN RAISE EXCEPTION USING"
                f" ERRCODE = '{LEASE_LOST_SQLSTATE}',"
                f" MESSAGE = 'this server lost the lease of project {name}';"
                " END IF; END$$"
            )
        raw: Any = connection.connection.driver_connection  # psycopg's own connection
        try:
            raw.execute(statement)
        except Exception as e:
            refused = lost(e)
            if refused is not None:
                raise refused from None
            raise

    def alive(self) -> bool:
        """Whether the lease connection is still up (so its locks still held);
        if not, every lease is dropped (``acquire`` connects again)."""
        with self._lock:
            if self._connection is None:
                return not self._held
            try:
                self._execute("SELECT 1")
                return True
            except Exception:
                with contextlib.suppress(Exception):
                    self._connection.close()
                self._connection = None
                self._held.clear()
                return False

    def held(self) -> set[str]:
        return set(self._held)

    def release(self, project: str) -> None:
        with self._lock:
            if project not in self._held:
                return
            self._held.discard(project)
            try:
                self._execute(
                    "SELECT pg_advisory_unlock(:space, :key)", space=LOCK_SPACE, key=_key(project)
                )
            except Exception as e:
                log.warning("releasing the lease of %s: %s", project, e)

    def close(self) -> None:
        with self._lock:
            self._held.clear()
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    self._connection.close()  # the locks go with the connection
                self._connection = None
        self._engine.dispose()
