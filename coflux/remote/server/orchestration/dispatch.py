"""Dispatch: assigning queued executions to connected agents that can take them.

Asked for (``request``) whenever something may have become assignable; it
runs just before the batch's next commit, so assignments are written in the
same transaction as what made them possible. Calls made by running
executions go first; a delayed execution is skipped until due, and a timer
of the clock comes back for the earliest one.
"""

from __future__ import annotations

import itertools

from ....records.placement import satisfies
from ..tables import T_EXECUTION
from .batch import Batch
from .clock import Clock, Timer
from .index import LiveIndex
from .state import LiveExecution, Session


class Dispatcher:
    def __init__(self, index: LiveIndex, batch: Batch, clock: Clock) -> None:
        self.index = index
        self.batch = batch
        self.clock = clock
        self._needed = False
        self._timer: Timer | None = None
        batch.before_flush = self.dispatch

    def request(self) -> None:
        """Assign what can be assigned just before the next commit (in the same transaction)."""
        self._needed = True
        self.batch.schedule()

    def dispatch(self) -> None:
        if not self._needed:
            return
        self._needed = False
        index = self.index
        available = [s for s in index.sessions.values() if s.send is not None and s.free > 0]
        if not available or not index.queue:
            return
        now = self.clock.time()
        next_due: float | None = None
        # Calls made by running executions go first: they unblock their callers,
        # where a new run would only add one more caller. The queue is walked in
        # place, not copied: a pass usually ends after a few assignments (no slot
        # left), and a copy of a 100,000-long queue each pass made a wide
        # fan-out cost O(N) per task. What is assigned leaves the queue after the walk.
        queue = index.queue
        calls = (i for i in queue if index.live[i].step.parent_execution_id is not None)
        runs = (i for i in queue if index.live[i].step.parent_execution_id is None)
        assigned: list[int] = []
        for id in itertools.chain(calls, runs):
            execution = index.live[id]
            if execution.wait_for or execution.linked_to is not None:
                continue
            if execution.execute_after is not None and execution.execute_after > now:
                due = execution.execute_after
                next_due = due if next_due is None else min(next_due, due)
                continue
            requires = execution.step.options.get("requires") or {}
            session = next(
                (
                    s
                    for s in available
                    if s.free > 0
                    and s.environment_id == execution.environment_id
                    and execution.step.repository in s.repositories
                    and satisfies(s.provides, requires)
                ),
                None,
            )
            if session is None:
                # No connected agent can take it (now): it stays queued, and a
                # later connect or freed slot asks for dispatch again.
                continue
            self._assign(execution, session)
            assigned.append(id)
            if not any(s.free > 0 for s in available):
                break
        index.dequeue(assigned)
        if next_due is not None:
            # Come back when the earliest delayed execution is due.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.clock.call_later(max(0.0, next_due - now), self.request)

    def _assign(self, execution: LiveExecution, session: Session) -> None:
        """Give it to ``session`` (the caller takes it off the queue)."""
        execution.state = "assigned"
        execution.session_id = session.id
        execution.assigned_at = self.clock.monotonic()
        session.executions.add(execution.id)
        self.batch.update(
            T_EXECUTION, execution.id, assigned_at=self.clock.time(), session_id=session.id
        )
        message = {
            "method": "execute",
            "params": {
                "execution_id": execution.ref,
                "repository": execution.step.repository,
                "target": execution.step.target,
                "arguments": execution.arguments or execution.step.arguments,
                "timeout": float(execution.step.options.get("timeout") or 0),
            },
        }
        send = session.send
        assert send is not None
        # An assignment acknowledges nothing: lost to a power cut with the
        # transaction, the execution is created again when its caller re-sends.
        self.batch.after_commit(lambda: send(message), durable=False)
