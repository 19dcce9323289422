"""A plain ``sqlite3`` connection to ``.coflux/state.db``: how read commands reach it.

``runs list``, ``runs show``, ``status`` and ``logs`` read the mirror, the
branch map, the queue and the notices, and refresh the mirror; importing
SQLAlchemy and SQLModel for that was more than half of their start-up. They
go through the standard library here instead.

The schema has one definition, the models of :mod:`coflux.local.state`, and
one keeper, :func:`coflux.local.state.engine`: it makes the tables, migrates
them and says what was lost. This module uses a database only once it is
exactly as that code leaves one (it reads whole, has this code's version,
every table and added column, and its marker); anything else (no file yet, an
older file, a lost table) is handed to the keeper first, so what is noticed,
repaired and said is the same whichever way a command came in. Damage is the
same one error (``StateDamaged``) either way.
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CofluxError

#: ``PRAGMA user_version`` of a state database made by this code: a database
#: with it that lacks a table has lost that table.
VERSION = 1
#: Beside ``state.db`` from its creation on: without the database, it was deleted.
MARKER = "state.created"
#: The tables :mod:`coflux.local.state` defines (tests/test_architecture.py
#: holds the two equal): a database lacking one goes to the keeper.
TABLES = frozenset(
    {
        "outbox",
        "notices",
        "pushed_digests",
        "runs",
        "run_lists",
        "branches",
        "pulled_runs",
        "pushed_runs",
        "cache_index",
        "snapshots",
    }
)
#: Columns added to a table after it was first made: (table, column, SQL type).
ADDED_COLUMNS = (("outbox", "dismissed_at", "FLOAT"),)


class StateDamaged(CofluxError):
    """``.coflux/state.db`` can't be read as a database."""

    code = "state_damaged"


def damaged(path: Path, reason: str) -> StateDamaged:
    return StateDamaged(
        f"{path} is damaged ({reason}); run `coflux state repair` to set it aside and "
        "start a new one (what the server holds is kept; queued operations that can "
        "still be read are carried over)"
    )


#: The databases found in order by this process (checked once, as the keeper does).
_in_order: set[Path] = set()


def forget(path: Path) -> None:
    """Check ``path`` again on next use (it is being moved aside or rebuilt)."""
    _in_order.discard(path)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit: a write is one explicit BEGIN IMMEDIATE ... COMMIT (see ``writing``).
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")  # an acknowledged queue entry stays
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


def _found_in_order(connection: sqlite3.Connection, path: Path) -> bool:
    """Whether the keeper would leave this database as it is (the checks it makes)."""
    verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
    if verdict != "ok":
        raise damaged(path, str(verdict))
    if connection.execute("PRAGMA user_version").fetchone()[0] != VERSION:
        return False
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables >= TABLES:
        return False
    for table, column, _ in ADDED_COLUMNS:
        if column not in {r[1] for r in connection.execute(f"PRAGMA table_info({table})")}:
            return False
    return (path.parent / MARKER).exists()


def ignored_by_git(folder: Path) -> None:
    """A ``.gitignore`` of ``*`` in the workspace folder, as pytest, mypy and ruff
    leave in their caches: the workspace is never part of the user's code (``git
    status`` stays clean, ``git add -A`` leaves it out, registering stays clean)."""
    marker = folder / ".gitignore"
    if not marker.exists():
        with contextlib.suppress(OSError):  # read-only: provenance ignores `.coflux` anyway
            marker.write_text("# Coflux's workspace state, not part of your code\n*\n")


def _open(data_dir: Path, create: bool) -> sqlite3.Connection | None:
    """A connection to a database in order; None when there is none and ``create`` is false."""
    path = (data_dir / "state.db").resolve()
    if path not in _in_order:
        if not path.exists() and not create and not (data_dir / MARKER).exists():
            return None
        if path.is_file():
            try:
                connection = _connect(path)
                in_order = _found_in_order(connection, path)
            except sqlite3.DatabaseError as e:
                raise damaged(path, str(e)) from None
            if in_order:
                _in_order.add(path)
                ignored_by_git(data_dir)  # a workspace made before it was written
                return connection
            connection.close()
        # Not in order, missing or not a file: the keeper makes, migrates, warns or refuses.
        from . import state

        state.engine(data_dir)
        _in_order.add(path)
    try:
        return _connect(path)
    except sqlite3.DatabaseError as e:
        raise damaged(path, str(e)) from None


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as e:
        # Locked or busy is contention, not damage; anything else that says the
        # file isn't a database (or is malformed) is damage.
        if isinstance(e, sqlite3.OperationalError):
            raise
        raise damaged(path, str(e)) from None


@contextlib.contextmanager
def reading(data_dir: Path) -> Iterator[sqlite3.Connection | None]:
    """A connection to read the workspace's state; None when it has no state database
    (one that vanished is made anew first, with its warning, as ``state.present`` does)."""
    connection = _open(data_dir, create=False)
    if connection is None:
        yield None
        return
    try:
        with _translated(data_dir / "state.db"):
            yield connection
    finally:
        connection.close()


@contextlib.contextmanager
def writing(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """A write transaction (``BEGIN IMMEDIATE``), committed when the block ends; the
    database is made (by the keeper) if the workspace has none yet."""
    connection = _open(data_dir, create=True)
    assert connection is not None
    try:
        with _translated(data_dir / "state.db"):
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
    finally:
        connection.close()


def named_rows(cursor: sqlite3.Cursor) -> list[Any]:
    """The cursor's rows as named tuples (``row.id``), as SQLAlchemy's rows read."""
    row = collections.namedtuple("row", [column[0] for column in cursor.description])  # type: ignore[misc]
    return [row(*values) for values in cursor]
