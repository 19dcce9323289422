"""An agent's entries for the machine's local index (``coflux.local.index``), buffered.

What the agent uploads or fetches (a result's blob, an asset) is recorded so
that commands on this machine find it without the server; entries are
written in batches, off the event loop, at most ``FLUSH_AFTER`` seconds late,
and what is left when the agent stops is written then. The index is an
optimisation: a failure to write it is logged, never fails work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..assets import blob_keys
from . import index

log = logging.getLogger("coflux.agent")

FLUSH_AFTER = 0.5


class IndexBuffer:
    def __init__(self, data_dir: Path, environment: str, spawn: Callable[[Any], None]) -> None:
        self.data_dir = data_dir
        self.environment = environment
        self._spawn = spawn
        self._buffer: list[dict[str, Any]] = []
        self._flush: asyncio.TimerHandle | None = None

    def add(self, entry: dict[str, Any]) -> None:
        self._buffer.append({"environment": self.environment, **entry})
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_AFTER, self._flush_now)

    def add_asset(self, key: str, entries: list[Any], path: str | None) -> None:
        self.add(
            {
                "kind": "asset",
                "key": key,
                "blobs": [key, *blob_keys(entries)],
                "path": path,
                "files": len(entries),
                "size": sum(e.size for e in entries),
            }
        )

    def _flush_now(self) -> None:
        self._flush = None
        entries, self._buffer = self._buffer, []
        if entries:
            self._spawn(asyncio.to_thread(record, self.data_dir, entries))

    def close(self) -> None:
        """Write what is left, here (the agent is stopping)."""
        if self._flush is not None:
            self._flush.cancel()
        entries, self._buffer = self._buffer, []
        record(self.data_dir, entries)


def record(data_dir: Path, entries: list[dict[str, Any]]) -> None:
    try:
        index.record(data_dir, entries)
    except Exception as e:  # the index is an optimisation: never fail work over it
        log.warning("couldn't update the local index: %s", e)
