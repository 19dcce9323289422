"""What an agent says about its work: one line per execution it ran, with the
target, the execution, how it ended and how long it took.

The lines go to the ``coflux.agent.executions`` logger, so ``coflux agent -q``
silences them with the rest of the agent's chatter.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("coflux.agent.executions")


class ExecutionLines:
    """Start times of the executions running here, and the line each gets when it ends."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[str, float]] = {}

    def started(self, execution_id: str, repository: str, target: str) -> None:
        self._running[execution_id] = (f"{repository}:{target}", time.monotonic())

    def ended(self, execution_id: str, outcome: str) -> None:
        started = self._running.pop(execution_id, None)
        if started is None:
            return  # not started here (a result re-sent after a reconnection)
        target, at = started
        log.info("%s  %s  %s  %s", target, execution_id, outcome, _duration(time.monotonic() - at))

    def reported(self, execution_id: str, error: dict[str, Any] | None) -> None:
        """The outcome of a result about to be sent: succeeded, or failed with its type."""
        self.ended(execution_id, "succeeded" if error is None else f"failed ({error.get('type')})")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s"
