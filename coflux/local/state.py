"""The workspace's local state, ``.coflux/state.db``: what a machine knows without the server.

- ``outbox``: operations made while the server was unreachable, written ahead
  (invariant I5) with an idempotency key, replayed in order by ``coflux sync``;
- ``runs``: a mirror of the runs this workspace made or looked at (the
  ``runs show --json`` document), and ``run_lists``: the last list of each
  environment's runs, so ``runs list/show`` answer offline;
- ``branches``: the branch-to-environment map of the workspace;
- ``cache_index``: per environment, the results and assets this machine holds
  (and the blobs behind each), so a cached value on the machine needs no
  download and ``coflux cache gc`` knows what to keep;
- ``pulled_runs`` and ``snapshots``: what ``coflux sync --pull`` fetched to seed
  the embedded server for offline work, and ``pushed_runs``: the runs made
  offline that ``coflux sync`` has copied to the shared server.

SQLite in WAL mode with a busy timeout, and every write transaction begins
``IMMEDIATE``, so concurrent commands (``coflux dev`` and a ``submit`` beside
it) wait for each other instead of failing with "database is locked".

Damage is never silent: a file that isn't a readable database raises
``StateDamaged`` (one line naming ``coflux state repair``); a table that
vanished from a database that had it, or a ``state.db`` that vanished from a
folder that had one, is recreated empty with a warning on stderr and a note
kept in ``notices`` for ``coflux status`` (see ``damage``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Column, Connection, Engine, create_engine, event
from sqlalchemy.types import JSON
from sqlmodel import Field, SQLModel

# The version, the marker and the damage error are shared with the plain
# sqlite3 connections of the read commands.
from .state_connection import (
    ADDED_COLUMNS,
    MARKER,
    VERSION,
    damaged,
    forget,
    ignored_by_git,
)
from .state_connection import StateDamaged as StateDamaged

metadata = SQLModel.metadata.__class__()  # the local tables only, not the server's


class _LocalModel(SQLModel):
    metadata = metadata


class OutboxEntry(_LocalModel, table=True):
    """An operation waiting for the server; ``done_at`` once the server has applied it."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    server: str
    project: str
    #: ``submit``, ``rerun``, ``cancel``, ``create_environment`` or ``register``.
    operation: str
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    idempotency_key: str = Field(unique=True)
    created_at: float
    done_at: float | None = None
    #: What the server answered (a run's ID and URL), or why it refused (with
    #: ``done_at``: for good; without: a transient refusal, retried by the next sync).
    result: dict | None = Field(default=None, sa_column=Column(JSON))
    error: str | None = None
    #: When ``coflux state dismiss`` acknowledged a refusal (``coflux status`` lists the rest).
    dismissed_at: float | None = None


class Notice(_LocalModel, table=True):
    """Damage the local state noticed and survived (a table or file recreated)."""

    __tablename__ = "notices"
    id: int | None = Field(default=None, primary_key=True)
    message: str
    created_at: float
    dismissed_at: float | None = None


class PushedDigest(_LocalModel, table=True):
    """The facts of a run as last pushed (a digest): pushed again when they change."""

    __tablename__ = "pushed_digests"
    server: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    digest: str
    #: Blobs the run names that were gone from this machine when it was pushed.
    missing_blobs: list = Field(sa_column=Column(JSON, nullable=False))
    pushed_at: float


class MirroredRun(_LocalModel, table=True):
    __tablename__ = "runs"
    server: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    #: The environment it was seen from, and the ``runs show --json`` document.
    view: str = Field(primary_key=True)
    document: dict = Field(sa_column=Column(JSON, nullable=False))
    fetched_at: float


class MirroredRunList(_LocalModel, table=True):
    __tablename__ = "run_lists"
    server: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    environment: str = Field(primary_key=True)
    runs: list = Field(sa_column=Column(JSON, nullable=False))
    fetched_at: float


class BranchEnvironment(_LocalModel, table=True):
    __tablename__ = "branches"
    server: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    branch: str = Field(primary_key=True)
    environment: str
    updated_at: float


class PulledRun(_LocalModel, table=True):
    """A shared server's run, kept to seed the embedded server for offline work."""

    __tablename__ = "pulled_runs"
    server: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    environment: str
    facts: dict = Field(sa_column=Column(JSON, nullable=False))
    pulled_at: float


class PushedRun(_LocalModel, table=True):
    """A run made on the embedded server and copied to the shared one."""

    __tablename__ = "pushed_runs"
    server: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    pushed_at: float


class IndexEntry(_LocalModel, table=True):
    """A result (``kind`` "result", ``key`` its execution) or an asset (``kind``
    "asset", ``key`` its manifest's hash) whose blobs are in the local store."""

    __tablename__ = "cache_index"
    environment: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    blobs: list = Field(sa_column=Column(JSON, nullable=False))
    #: For an asset: where it was persisted from, its file count and size.
    path: str | None = None
    files: int | None = None
    size: int | None = None
    created_at: float


class Snapshot(_LocalModel, table=True):
    """The last copy of something small of the shared server (e.g. its environments)."""

    __tablename__ = "snapshots"
    server: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    data: list = Field(sa_column=Column(JSON, nullable=False))
    taken_at: float


T_OUTBOX = OutboxEntry.__table__  # type: ignore[attr-defined]
T_RUNS = MirroredRun.__table__  # type: ignore[attr-defined]
T_RUN_LISTS = MirroredRunList.__table__  # type: ignore[attr-defined]
T_BRANCHES = BranchEnvironment.__table__  # type: ignore[attr-defined]
T_PULLED = PulledRun.__table__  # type: ignore[attr-defined]
T_PUSHED = PushedRun.__table__  # type: ignore[attr-defined]
T_SNAPSHOTS = Snapshot.__table__  # type: ignore[attr-defined]
T_INDEX = IndexEntry.__table__  # type: ignore[attr-defined]
T_NOTICES = Notice.__table__  # type: ignore[attr-defined]
T_DIGESTS = PushedDigest.__table__  # type: ignore[attr-defined]

_engines: dict[Path, Engine] = {}


def engine(data_dir: Path) -> Engine:
    """The state database of a workspace's ``.coflux`` folder (created on first use)."""
    path = (data_dir / "state.db").resolve()
    if path not in _engines:
        if path.is_dir():
            raise damaged(path, "it is a directory, not a database")
        path.parent.mkdir(parents=True, exist_ok=True)
        ignored_by_git(path.parent)
        existed = path.exists()
        if not existed:
            # The journal of a deleted database would be replayed into the new
            # one (SQLite then fails with "disk I/O error"): set it aside too.
            for suffix in ("-wal", "-shm"):
                orphan = Path(f"{path}{suffix}")
                if orphan.exists():
                    orphan.rename(Path(f"{path}{suffix}.orphan-{int(time.time())}"))
        created = create_engine(
            f"sqlite:///{path}", connect_args={"timeout": 30, "isolation_level": None}
        )

        @event.listens_for(created, "connect")
        def _pragmas(connection: Any, _: Any) -> None:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # an acknowledged queue entry stays
            connection.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(created, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(created, "handle_error")
        def _damage(context: Any) -> None:
            error = context.original_exception
            # Locked or busy is contention, not damage; anything else that says the
            # file isn't a database (or is malformed) is damage.
            if isinstance(error, sqlite3.DatabaseError) and not isinstance(
                error, sqlite3.OperationalError
            ):
                raise damaged(path, str(error)) from None

        try:
            _open(created, path, existed)
        except sqlalchemy.exc.DatabaseError as e:
            raise damaged(path, str(e.orig)) from None
        _engines[path] = created
    return _engines[path]


def _open(created: Engine, path: Path, existed: bool) -> None:
    """Make the tables; say so when ones that existed are gone."""
    marker = path.parent / MARKER
    with created.begin() as c:
        # A few milliseconds for a state of megabytes, and a truncated or
        # overwritten page is found here rather than by the query that meets it.
        verdict = c.exec_driver_sql("PRAGMA quick_check(1)").scalar()
        if verdict != "ok":
            raise damaged(path, str(verdict))
        version = c.exec_driver_sql("PRAGMA user_version").scalar() or 0
        tables = {
            row[0] for row in c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")
        }
    lost = sorted(set(metadata.tables) - tables) if version >= VERSION else []
    metadata.create_all(created)
    with created.begin() as c:
        _migrate(c)
        c.exec_driver_sql(f"PRAGMA user_version={VERSION}")
        notes = []
        if not existed and marker.exists():
            notes.append(
                f"{path} was missing and has been made anew: operations queued in it "
                "before are lost (runs made offline on the embedded server are still "
                "pushed by `coflux sync`)"
            )
        elif lost:
            queue = " (the queue: operations queued before are lost)" if "outbox" in lost else ""
            notes.append(
                f"{path} had lost its table(s) {', '.join(lost)}{queue}; recreated them empty"
            )
        for note in notes:
            sys.stderr.write(f"warning: {note}\n")
            c.execute(T_NOTICES.insert().values(message=note, created_at=now()))
    marker.touch()


def _migrate(c: Connection) -> None:
    """Columns added since a table was first made (``create_all`` adds only tables)."""
    for table, column, kind in ADDED_COLUMNS:
        columns = {row[1] for row in c.exec_driver_sql(f"PRAGMA table_info({table})")}
        if column not in columns:
            c.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def present(data_dir: Path) -> bool:
    """Whether the workspace has a state database; one that vanished is made anew
    here (with its warning), so the queue's loss is said by whoever looks first."""
    if (data_dir / "state.db").exists():
        return True
    if (data_dir / MARKER).exists():
        engine(data_dir)
        return True
    return False


def dispose(data_dir: Path) -> None:
    """Forget the engine of ``data_dir``'s state database (before it is moved)."""
    path = (data_dir / "state.db").resolve()
    forget(path)
    created = _engines.pop(path, None)
    if created is not None:
        created.dispose()


@contextlib.contextmanager
def writing(data_dir: Path) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE``), committed when the block ends."""
    with engine(data_dir).begin() as connection:
        yield connection


def now() -> float:
    return time.time()
