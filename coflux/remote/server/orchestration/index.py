"""The live index: every in-memory map of a project's orchestrator, and its one rebuild.

It holds the live (not yet finished) executions and what follows from them:
the queue, who waits for whom, cache links, defer and memo slots, agent
sessions, recent outcomes and idempotency keys seen. Nothing here is the
record: the database is. ``rebuild`` reads the live executions back from it
and derives the rest (``restore``), as after a restart; where memory has
forgotten something (an old execution), the look-ups ask the database.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from ....errors import NotFound
from ....records.targets import TargetSpec
from ..tables import T_DEPENDENCY, T_EXECUTION, T_RESULT, T_STEP
from . import lookups, restore
from .clock import Clock
from .state import FINISHED_CACHE_SIZE, LiveExecution, ResultCallback, Session
from .steps import live_step

#: How many idempotency keys of cancellations are remembered.
CANCELS_REMEMBERED = 10000


class LiveIndex:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.clear()

    def clear(self) -> None:
        self.live: dict[int, LiveExecution] = {}
        self.live_refs: dict[str, int] = {}
        self.queue: dict[int, None] = {}  # queued execution ids, oldest first
        #: Ids taken off the front of ``queue`` since it was last compacted: a
        #: dict keeps a hole for each, which every walk from its front skips.
        self._dequeued = 0
        #: The live executions of each run, so a wait for a run (a long poll)
        #: costs what that run has live, not a walk of every live execution.
        self.live_by_run: dict[str, set[int]] = {}
        #: Called once a run has nothing live left (its last execution ended).
        self.run_idle: dict[str, list[Callable[[], None]]] = {}
        #: For each live execution, the queued executions that wait for it to finish.
        self.held_by: dict[int, set[int]] = {}
        self.sessions: dict[str, Session] = {}
        self.waiters: dict[int, list[ResultCallback]] = {}
        #: Outcomes of recently finished executions, newest last: answers a
        #: wait without a query, including for outcomes staged but not yet committed.
        self.finished: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.finished_refs: OrderedDict[str, int] = OrderedDict()
        #: Retried executions and the attempt that replaced them.
        self.successors: dict[int, int] = {}
        #: Live executions by (environment, cache key), and those linked to each.
        self.pending_cache: dict[tuple[int, str], int] = {}
        self.links: dict[int, set[int]] = {}
        #: Recent successes by (environment, cache key): (execution, value, time).
        self.recent_cache: OrderedDict[tuple[int, str], tuple[int, dict[str, Any], float]] = (
            OrderedDict()
        )
        #: The newest not-yet-started execution by (environment, defer key).
        self.pending_defer: dict[tuple[int, str], int] = {}
        #: Memoised steps by (run, memo key): the reference of the step's first execution.
        self.memo_steps: dict[tuple[str, str], str] = {}
        #: The highest step number of each run seen (the rest are queried).
        self.step_counters: dict[str, int] = {}
        #: Runs submitted with an idempotency key by this process (the rest are queried).
        self.runs_by_key: dict[str, str] = {}
        self.reruns_by_key: dict[str, str] = {}
        #: Cancellations by key: how many each cancelled (a restart relies on ``before``).
        self.cancels_by_key: OrderedDict[str, int] = OrderedDict()

    # --- the one rebuild --------------------------------------------------------

    def rebuild(
        self,
        ancestry: Callable[[int], list[int]],
        find_target: Callable[[int, str, str], TargetSpec],
    ) -> None:
        """Forget everything, then read the live executions back from the database
        and derive what follows from them (see ``restore``)."""
        self.clear()
        with self.engine.connect() as c:
            rows = c.execute(
                select(T_EXECUTION, T_STEP)
                .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
                .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
                .where(T_RESULT.c.execution_id.is_(None))
                .order_by(T_EXECUTION.c.id)
            ).all()
        now = self.clock.monotonic()
        for row in rows:
            m = row._mapping
            step = live_step({column.name: m[column] for column in T_STEP.c})
            execution = LiveExecution(
                m[T_EXECUTION.c.id], step, m["attempt"], m["environment_id"], restored=True
            )
            execution.incremental = m["incremental"]
            execution.execute_after = m["execute_after"]
            # Counting every earlier attempt as a retry errs on the side of
            # fewer attempts than allowed, never more.
            execution.retries_used = m["attempt"] - 1
            execution.arguments = m[T_EXECUTION.c.arguments]
            execution.checkpoint = m[T_EXECUTION.c.checkpoint]
            self.add(execution)
            session_id = m["session_id"]
            if m["assigned_at"] is not None and session_id:
                # Its agent may still be running it: give the agent the usual
                # timeout to reconnect and claim it.
                session = self.sessions.get(session_id)
                if session is None:
                    session = self.sessions[session_id] = Session(
                        session_id, execution.environment_id, set(), 0, None, now
                    )
                execution.state = "assigned"
                execution.session_id = session_id
                execution.assigned_at = now
                execution.started = m["started_at"] is not None
                session.executions.add(execution.id)
            else:
                self.queue[execution.id] = None
        if self.live:
            with self.engine.connect() as c:
                for dep in c.execute(
                    select(T_DEPENDENCY).where(T_DEPENDENCY.c.execution_id.in_(list(self.live)))
                ):
                    self.live[dep.execution_id].dependencies.add(dep.dependency_id)
        restore.derive(self, ancestry, find_target)

    # --- live executions --------------------------------------------------------

    def add(self, execution: LiveExecution) -> None:
        self.live[execution.id] = execution
        self.live_refs[execution.ref] = execution.id
        self.live_by_run.setdefault(execution.step.run_id, set()).add(execution.id)

    def remove(self, execution: LiveExecution, message: dict[str, Any]) -> None:
        """It has ended with ``message``: no longer live, its outcome kept for a while."""
        self.live.pop(execution.id, None)
        self.live_refs.pop(execution.ref, None)
        self.queue.pop(execution.id, None)
        run_id = execution.step.run_id
        run_live = self.live_by_run.get(run_id)
        if run_live is not None:
            run_live.discard(execution.id)
            if not run_live:
                del self.live_by_run[run_id]
                for idle in self.run_idle.pop(run_id, ()):
                    idle()
        self.finished[execution.id] = message
        self.finished_refs[execution.ref] = execution.id
        if len(self.finished) > FINISHED_CACHE_SIZE:
            self.finished.popitem(last=False)
            self.finished_refs.popitem(last=False)

    def dequeue(self, ids: list[int]) -> None:
        """Take assigned executions off the queue. Dispatch takes them from its
        front, and a dict keeps a hole for each that every later walk from the
        front skips (70,000 holes: 0.14 ms a pass, O(N) per task in a wide
        fan-out). So it is compacted by one copy (about 12 ns an id, against
        1 ns a hole skipped) once the holes reach the square root of 32 times
        its length, where the two costs per id balance (under 1 µs at 100,000)."""
        for id in ids:
            del self.queue[id]
        self._dequeued += len(ids)
        if self._dequeued > max(256, math.isqrt(32 * len(self.queue))):
            compacted = dict(self.queue)
            self.queue.clear()
            self.queue.update(compacted)
            self._dequeued = 0

    def live_by_ref(self, ref: str) -> LiveExecution | None:
        id = self.live_refs.get(ref)
        return self.live.get(id) if id is not None else None

    def owned(self, session: Session, ref: str) -> LiveExecution:
        """The live execution ``ref`` if this session runs it."""
        execution = self.live_by_ref(ref)
        if execution is None or execution.session_id != session.id:
            raise NotFound(f"execution {ref} is not running on this agent")
        return execution

    def hold(self, execution: LiveExecution, dependency: int) -> None:
        """``execution`` may not start before the live ``dependency`` has finished."""
        execution.wait_for.add(dependency)
        self.held_by.setdefault(dependency, set()).add(execution.id)

    def hand_over(self, old: int, new: int) -> None:
        """Whoever waited for (or was linked to) ``old`` now waits for ``new``."""
        self.successors[old] = new
        if old in self.waiters:
            self.waiters.setdefault(new, []).extend(self.waiters.pop(old))
        for held in self.held_by.pop(old, ()):
            if held in self.live:
                self.live[held].wait_for.discard(old)
                self.hold(self.live[held], new)
        for linked in self.links.pop(old, ()):
            if linked in self.live:
                self.live[linked].linked_to = new
                self.links.setdefault(new, set()).add(linked)

    def release_held(self, id: int) -> None:
        """``id`` has ended: what waited for it to may start."""
        for held in self.held_by.pop(id, ()):
            if held in self.live:
                self.live[held].wait_for.discard(id)

    def remember_cancel(self, key: str, cancelled: int) -> None:
        self.cancels_by_key[key] = cancelled
        while len(self.cancels_by_key) > CANCELS_REMEMBERED:
            self.cancels_by_key.popitem(last=False)

    # --- look-ups: memory first, then the database ------------------------------

    def execution_id(self, ref: str) -> int:
        if ref in self.live_refs:
            return self.live_refs[ref]
        if ref in self.finished_refs:
            return self.finished_refs[ref]
        with self.engine.connect() as c:
            id = lookups.execution_by_ref(c, ref)
        if id is None:
            raise NotFound(f"unknown execution {ref}")
        return id

    def ref_of(self, execution_id: int) -> str:
        if execution_id in self.live:
            return self.live[execution_id].ref
        for ref, id in self.finished_refs.items():
            if id == execution_id:
                return ref
        with self.engine.connect() as c:
            return lookups.ref_of(c, execution_id)

    def latest(self, execution_id: int) -> int:
        """The newest attempt that replaced this execution (itself if none)."""
        while execution_id in self.successors:
            execution_id = self.successors[execution_id]
        return execution_id

    def known_result(self, ref: str) -> dict[str, Any] | None:
        """The outcome of an execution that has finished recently, without a query."""
        id = self.finished_refs.get(ref)
        if id is None or id in self.successors:
            return None
        return self.finished.get(id)

    def stored_result(self, execution_id: int) -> dict[str, Any] | None:
        if execution_id in self.finished:
            return self.finished[execution_id]
        with self.engine.connect() as c:
            return lookups.stored_result(c, execution_id)

    def later_attempt(self, execution_id: int) -> int | None:
        with self.engine.connect() as c:
            return lookups.later_attempt(c, execution_id)

    def code_hash_of(self, ref: str) -> str | None:
        """The code hash of the step an execution reference names."""
        execution_id = self.execution_id(ref)
        if execution_id in self.live:
            return self.live[execution_id].step.code_hash
        with self.engine.connect() as c:
            return lookups.code_hash_of(c, execution_id)

    def follow_replaced(
        self, id: int, result: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any] | None]:
        """From a finished execution and its stored outcome to the one that
        replaced it (a later attempt of its step, or the newer call that deferred
        it), and on, as far as the chain goes; the outcome is None for a live one.
        After a restart the in-memory successors are gone: this finds them again."""
        while result is not None and result["state"] in restore.REPLACED_STATES:
            with self.engine.connect() as c:
                later = (
                    lookups.deferred_to(c, id)
                    if result["state"] == "deferred"
                    else lookups.later_attempt(c, id)
                )
            if later is None:
                break
            self.successors[id] = later
            id = self.latest(later)
            result = None if id in self.live else self.stored_result(id)
        return id, result
