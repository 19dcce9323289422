"""Small helpers the pages share: a run's liveness, times, and log lines as text.

Values are shown without unpickling (invariant I8): log values as stored,
anything typed as its repr.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

#: Log lines shown on a run page; the rest is behind a link.
LOG_LIMIT = 300

ACTIVE_STATES = ("queued", "assigned", "running")


def _time(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def is_active(run: dict[str, Any]) -> bool:
    return any(e["state"] in ACTIVE_STATES for s in run["steps"] for e in s["executions"])


def duration(seconds: float | None) -> str:
    """``1.234`` → ``1.23 s``, ``754`` → ``12 m 34 s``: how long, for people."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} m"


def log_line(entry: dict[str, Any]) -> str:
    """A log message with its template filled in (values as stored, never unpickled)."""
    template = entry["template"] or ""
    values = entry["values"] or {}
    try:
        return template.format(**{k: _plain(v) for k, v in values.items()})
    except (KeyError, IndexError, ValueError, AttributeError):
        return template + (" " + json.dumps(values) if values else "")


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and "$type" in value:
        return value.get("repr")
    return value
