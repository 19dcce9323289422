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
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, create_engine, event
from sqlalchemy.types import JSON
from sqlmodel import Field, SQLModel

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
    #: What the server answered (a run's ID and URL), or why it refused.
    result: dict | None = Field(default=None, sa_column=Column(JSON))
    error: str | None = None


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

_engines: dict[Path, Engine] = {}


def engine(data_dir: Path) -> Engine:
    """The state database of a workspace's ``.coflux`` folder (created on first use)."""
    path = (data_dir / "state.db").resolve()
    if path not in _engines:
        path.parent.mkdir(parents=True, exist_ok=True)
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

        metadata.create_all(created)
        _engines[path] = created
    return _engines[path]


@contextlib.contextmanager
def writing(data_dir: Path) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE``), committed when the block ends."""
    with engine(data_dir).begin() as connection:
        yield connection


def now() -> float:
    return time.time()
