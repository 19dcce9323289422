"""The orchestrator's time source: wall-clock time, monotonic time, timers.

Every rule that depends on time (a retry's delay, ``delay=``, a cache's
``max_age``, a sensor's restart interval, the start and agent timeouts, the
wake-up for the next delayed execution) reads it here, so tests can drive
the orchestrator with a clock of their own instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock:
    """The real clock: ``time.time``, ``time.monotonic`` and the event loop's timers."""

    def time(self) -> float:
        """Wall-clock seconds (stored in rows, compared with ``execute_after``)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds that never go back (agents' silence, start timeouts)."""
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` on the running event loop after ``delay`` seconds."""
        return asyncio.get_running_loop().call_later(delay, callback)
