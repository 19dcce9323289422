"""An agent's log shipping: its executions' lines, batched to the server under back-pressure.

Lines are sent in ``put_logs`` requests of at most ``FRAME_BYTES`` (measured
as sent: escapes can make a line's JSON six times its length), at most
``FLUSH_AFTER`` seconds after they were printed. Log bytes sent and not yet
acknowledged beyond ``LOG_BACKLOG_BYTES`` make the agent stop reading its
workers' output (they block on their next write), so a task printing faster
than the server stores costs the agent bounded memory, and nothing printed
is dropped for it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from .blob_transfers import group

#: Bytes of messages sent to the server in one WebSocket frame (its limit is 1 MiB).
FRAME_BYTES = 256 * 1024
LOG_BACKLOG_BYTES = 4 * 1024 * 1024
#: Lines in one request, at most, and the longest a line waits to be sent.
LINES_AT_ONCE = 500
FLUSH_AFTER = 0.05


class LogShipper:
    def __init__(self, fire: Callable[[str, dict[str, Any]], asyncio.Future[Any]]) -> None:
        self._fire = fire
        self._buffer: list[dict[str, Any]] = []
        self._bytes = 0
        self._flush: asyncio.TimerHandle | None = None
        self._unacknowledged = 0
        self._drained = asyncio.Event()
        self._drained.set()

    async def add(self, entry: dict[str, Any]) -> None:
        """Queue a line; returns once the backlog allows reading the next one."""
        self._buffer.append(entry)
        self._bytes += len(entry.get("template") or "") + len(str(entry["values"]))
        if len(self._buffer) >= LINES_AT_ONCE or self._bytes >= FRAME_BYTES:
            self.flush()
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)
        await self._drained.wait()

    def flush(self) -> None:
        """Send what is queued now (before a result, so its lines come first)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._buffer:
            return
        messages, self._buffer, self._bytes = self._buffer, [], 0
        sized = [(m, len(json.dumps(m))) for m in messages]
        for batch in group(sized, lambda pair: pair[1], FRAME_BYTES):
            size = sum(n for _, n in batch)
            self._unacknowledged += size
            if self._unacknowledged > LOG_BACKLOG_BYTES:
                self._drained.clear()
            future = self._fire("put_logs", {"messages": [m for m, _ in batch]})
            future.add_done_callback(functools.partial(self._acknowledged, size))

    def _acknowledged(self, size: int, _: asyncio.Future[Any]) -> None:
        self._unacknowledged -= size
        if self._unacknowledged <= LOG_BACKLOG_BYTES // 2:
            self._drained.set()
