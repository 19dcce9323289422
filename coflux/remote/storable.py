"""What the server's store can hold, checked where a request comes in.

Both backends refuse some values JSON can carry: a number that isn't finite
(``NaN``, ``Infinity``, or ``1e999999``, which Python reads as infinity), a
string with a lone surrogate (``"\\ud800"``, which isn't Unicode); and in
a field the server keeps in a column, an integer beyond 64 bits or a time no
date can show (``Int``, ``Timestamp``). Such a value is refused where it
arrives (HTTP bodies through ``schemas``, agent messages in
``AgentConnection``), naming the field, so SQLite and PostgreSQL answer alike
and nothing reaches the group commit that the database would refuse there.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import Field

#: Largest and smallest integer a 64-bit column holds.
MAX_INT = 2**63 - 1
#: The last second of year 9999 (UTC): any later time has no date to show.
MAX_TIMESTAMP = 253402300799.0

#: An integer a column can hold.
Int = Annotated[int, Field(ge=-MAX_INT - 1, le=MAX_INT)]
#: A wall-clock time in seconds since the epoch, finite and with a date.
Timestamp = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)]


def problem(value: Any) -> str | None:
    """Where and why ``value`` (decoded JSON) can't be stored, or None if it can.
    Integers of any size are fine inside JSON (stored as its text).

        A first pass without paths (the common case costs one walk); only a value
        that fails is walked again to name where.
    """
    if _storable(value):
        return None
    return _locate(value, [])


def _storable(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _valid_text(item):
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict:
            for key, child in item.items():
                if type(key) is str and not key.isascii() and not _valid_text(key):
                    return False
                stack.append(child)
        elif kind is list:
            stack.extend(item)
    return True


def _locate(value: Any, path: list[str]) -> str | None:
    where = ".".join(path) or "the value"
    kind = type(value)
    if kind is str and not value.isascii() and not _valid_text(value):
        return f"{where} holds a lone surrogate (\\ud800-\\udfff), which isn't Unicode"
    if kind is float and not math.isfinite(value):
        return f"{where} is {value!r}: only finite numbers can be stored (not NaN or Infinity)"
    if kind is dict:
        for key, child in value.items():
            if type(key) is str and not key.isascii() and not _valid_text(key):
                return f"a key of {where} holds a lone surrogate (\\ud800-\\udfff)"
            found = _locate(child, [*path, str(key)])
            if found:
                return found
    if kind is list:
        for index, child in enumerate(value):
            found = _locate(child, [*path, str(index)])
            if found:
                return found
    return None


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
