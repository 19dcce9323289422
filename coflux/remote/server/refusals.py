"""What a write the database refused means to whoever sent it.

The group commit (``orchestration.batch``) answers the senders of a refused
change with one of these errors instead of an acknowledgement: 507 when the
disk is full, 422 when a value can't be stored, 503 when the database can't
be reached (or refused for a reason that says nothing about the value). Both
backends' errors map alike, so a client sees the same answer on either.
"""

from __future__ import annotations

from typing import Any

from ...errors import CofluxError, InvalidInput, StorageFull


class StoreUnavailable(CofluxError):
    """The database can't take writes now; the same request may succeed later."""

    status_code = 503
    code = "unavailable"


#: SQLite's primary result codes (``sqlite3.Error.sqlite_errorcode & 0xff``).
_SQLITE_FULL = 13
_SQLITE_TOOBIG = 18
_SQLITE_CONSTRAINT = 19
_SQLITE_MISMATCH = 20


def refusal(error: BaseException) -> CofluxError:
    """The error to answer a change's sender with, for the database's ``error``."""
    if isinstance(error, CofluxError):
        return error
    orig: Any = getattr(error, "orig", None) or error
    first = (str(orig).strip().splitlines() or ["?"])[0]
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):  # PostgreSQL (psycopg)
        if sqlstate in ("53100", "53200"):  # disk_full, out_of_memory
            return StorageFull(f"the database is out of space; nothing was kept ({first})")
        if sqlstate[:2] in ("22", "23"):  # data exception, integrity constraint
            return InvalidInput(f"the database can't store a value of this request: {first}")
        return StoreUnavailable(f"the database refused the write; try again later ({first})")
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary == _SQLITE_FULL:
            return StorageFull("the server is out of disk space; nothing was kept")
        if primary in (_SQLITE_TOOBIG, _SQLITE_CONSTRAINT, _SQLITE_MISMATCH):
            return InvalidInput(f"the database can't store a value of this request: {first}")
    return StoreUnavailable(f"the database refused the write; try again later ({first})")


def missing_reference(error: BaseException) -> bool:
    """Whether ``error`` is a foreign key naming a row that isn't stored."""
    orig: Any = getattr(error, "orig", None) or error
    if getattr(orig, "sqlstate", None) == "23503":
        return True
    return getattr(orig, "sqlite_errorcode", None) == 787  # SQLITE_CONSTRAINT_FOREIGNKEY
