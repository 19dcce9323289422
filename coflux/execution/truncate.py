"""Cutting what an execution says down to what the connection can carry.

Log messages and errors travel to the server inside WebSocket messages, which
it limits (``MAX_MESSAGE_BYTES``); one message over the limit closed the
agent's connection, and re-sending it after each reconnect wedged the agent.
So a long string is cut where it is made, with a marker saying how much was
dropped, as output over an execution's budget already is: in a log message,
every string (the template, each value, strings inside values) keeps at
most ``STRING_LIMIT`` characters, and a value that isn't a string but whose
JSON is longer is replaced by its JSON, cut. If the message is still too
large as sent (escapes can make JSON six times as long as its text), the
limit is halved until it fits.
"""

from __future__ import annotations

import json
from typing import Any

#: Characters kept of any one string of a log message or an error.
STRING_LIMIT = 64_000
#: Largest log message or error as JSON (well under the server's message limit,
#: so a few travel in one frame).
MESSAGE_LIMIT = 512 * 1024


def cut(text: str, limit: int = STRING_LIMIT, keep_end: bool = False) -> str:
    """``text`` itself, or ``limit`` characters of it and a marker of what was dropped
    (in bytes of UTF-8); ``keep_end`` keeps the end (of a traceback, say)."""
    if len(text) <= limit:
        return text
    kept, dropped = (text[-limit:], text[:-limit]) if keep_end else (text[:limit], text[limit:])
    size = len(dropped.encode("utf-8", "surrogatepass"))
    marker = f"[coflux: {size} bytes truncated]"
    return f"{marker} …{kept}" if keep_end else f"{kept}… {marker}"


def fit_log(
    template: str | None, values: dict[str, Any], budget: int = MESSAGE_LIMIT
) -> tuple[str | None, dict[str, Any]]:
    """A log message's template and values, cut so that together they fit ``budget``
    bytes of JSON."""
    if _short(template, values, budget):
        return template, values  # the usual message, without encoding it to measure
    limit = STRING_LIMIT
    while True:
        fitted = None if template is None else cut(template, limit)
        shown = {cut(k, limit): _fit_value(v, limit) for k, v in values.items()}
        if limit <= 64 or _size([fitted, shown]) <= budget:
            return fitted, shown
        limit //= 2


def fit_error(error: dict[str, Any], budget: int = MESSAGE_LIMIT) -> dict[str, Any]:
    """An error (``type``, ``message``, ``traceback``) cut to fit ``budget`` bytes of
    JSON: the message keeps its start, the traceback its end (the frame that raised)."""
    limit = STRING_LIMIT
    while True:
        fitted = {
            **error,
            "type": cut(str(error.get("type", "")), 1000),
            "message": cut(str(error.get("message", "")), limit),
            "traceback": cut(str(error.get("traceback", "")), limit, keep_end=True),
        }
        if limit <= 64 or _size(fitted) <= budget:
            return fitted
        limit //= 2


def _short(template: str | None, values: dict[str, Any], budget: int) -> bool:
    """Whether the message surely fits: short strings and plain numbers only,
    counted at six bytes a character (the longest JSON escape)."""
    size = len(template or "")
    for key, value in values.items():
        if isinstance(value, str):
            size += len(key) + len(value)
        elif value is None or isinstance(value, (bool, int, float)):
            size += len(key) + 32
        else:
            return False
    return size * 6 + 16 * len(values) + 64 <= budget


def _fit_value(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return cut(value, limit)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict) and len(value) <= 16:
        return {cut(str(k), limit): _fit_value(v, limit) for k, v in value.items()}
    text = json.dumps(value)
    if len(text) <= limit:
        return value
    return cut(text, limit)


def _size(value: Any) -> int:
    """Bytes as the agent sends it: JSON with non-ASCII escaped."""
    return len(json.dumps(value))
