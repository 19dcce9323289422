"""Reusing work: cache hits and links, memoised steps, deferred calls.

A mixin of :class:`~.project.ProjectOrchestrator`: the rules that decide when a
new step or execution refers to an existing result instead of running.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..blobcheck import lost_blob
from ..blobstores import blobs_of
from ..tables import T_EXECUTION, T_LOG, T_RESULT, T_STEP
from .state import FINISHED_CACHE_SIZE, LiveExecution

if TYPE_CHECKING:
    from collections import OrderedDict

    from sqlalchemy import Engine

    from ..settings import Settings
    from .batch import Batch


class ReuseRules:
    """Cache, memo and defer decisions; the state they read lives in the orchestrator."""

    # Provided by ProjectOrchestrator.
    live: dict[int, LiveExecution]
    name: str
    engine: Engine
    settings: Settings
    batch: Batch
    environment_bases: dict[int, int | None]
    queue: dict[int, None]
    pending_cache: dict[tuple[int, str], int]
    links: dict[int, set[int]]
    recent_cache: OrderedDict[tuple[int, str], tuple[int, dict[str, Any], float]]
    pending_defer: dict[tuple[int, str], int]
    memo_steps: dict[tuple[str, str], str]

    if TYPE_CHECKING:

        def _finish(
            self,
            execution: LiveExecution,
            state: str,
            value: dict[str, Any] | None = None,
            error: dict[str, Any] | None = None,
            reused_from: int | None = None,
            successor: LiveExecution | None = None,
        ) -> bool: ...

        def _record_dependency(self, execution: LiveExecution, dependency_id: int) -> None: ...

        def _ref_of(self, execution_id: int) -> str: ...

        def _new_id(self, table: str) -> int: ...

        def _execution_id(self, ref: str) -> int: ...

        def _latest(self, execution_id: int) -> int: ...

    def _defer_older(self, execution: LiveExecution, key: str) -> None:
        """A newer call with the same defer key replaces one that has not started yet."""
        slot = (execution.environment_id, key)
        older = self.live.get(self.pending_defer.get(slot, -1))
        if older is not None and older.state == "queued" and older.linked_to is None:
            self._finish(older, "deferred", successor=execution)
            # Stored (as what it waits for), so a restart still follows it there.
            self._record_dependency(older, execution.id)
        self.pending_defer[slot] = execution.id

    def _ancestry(self, environment_id: int) -> list[int]:
        """The environment, then its base, then the base's base..."""
        chain: list[int] = []
        current: int | None = environment_id
        while current is not None and current not in chain:
            chain.append(current)
            current = self.environment_bases.get(current)
        return chain

    def _reuse_cached(self, execution: LiveExecution) -> bool:
        """Reuse a result with the same cache key: now if there is one, later if it is pending."""
        key = execution.step.cache_key
        assert key is not None
        max_age = (execution.step.options.get("cache") or {}).get("max_age")
        oldest = time.time() - max_age if max_age is not None else None
        for environment_id in self._ancestry(execution.environment_id):
            pending = self.pending_cache.get((environment_id, key))
            if pending is not None and pending in self.live:
                execution.linked_to = pending
                self.links.setdefault(pending, set()).add(execution.id)
                return True
            found = self._cached_result(environment_id, key, oldest)
            if found is not None:
                source_id, value = found
                lost = lost_blob(blobs_of(self.settings, self.name), value)
                if lost is None:
                    self._finish(execution, "cached", value=value, reused_from=source_id)
                    return True
                # A lost blob is a cache miss: the step executes again, and its
                # result becomes the one later calls reuse.
                self.recent_cache.pop((environment_id, key), None)
                self._server_warning(
                    execution,
                    f"the cached result of {self._ref_of(source_id)} can't be reused "
                    f"({lost}); executing again",
                )
                return False
        return False

    def _server_warning(self, execution: LiveExecution, message: str) -> None:
        """A warning in the execution's log, from the server: sequence 0, before
        any of its agent's messages (which start at 1)."""
        self.batch.insert(
            T_LOG,
            {
                "id": self._new_id("log_messages"),
                "execution_id": execution.id,
                "sequence": 0,
                "timestamp": time.time(),
                "level": "warning",
                "template": message,
                "values": {},
            },
        )

    def _cached_result(
        self, environment_id: int, key: str, oldest: float | None
    ) -> tuple[int, dict[str, Any]] | None:
        recent = self.recent_cache.get((environment_id, key))
        if recent is not None:
            source_id, value, finished_at = recent
            return (source_id, value) if oldest is None or finished_at >= oldest else None
        query = (
            select(T_EXECUTION.c.id, T_RESULT.c.value, T_RESULT.c.reused_from_id)
            .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
            .join(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
            .where(T_STEP.c.cache_key == key)
            .where(T_EXECUTION.c.environment_id == environment_id)
            .where(T_RESULT.c.state.in_(("succeeded", "cached")))
            .order_by(T_RESULT.c.created_at.desc())
            .limit(1)
        )
        if oldest is not None:
            query = query.where(T_RESULT.c.created_at >= oldest)
        with self.engine.connect() as c:
            row = c.execute(query).first()
        if row is None:
            return None
        return (row.reused_from_id or row.id, row.value)

    def _release_links(
        self,
        source: LiveExecution,
        state: str,
        value: dict[str, Any] | None,
        now: float,
        origin: int,
    ) -> None:
        """Executions linked by cache key reuse a success, or run themselves after a failure.

        ``origin`` is the execution that computed the value (for a cached one, its source).
        """
        if state in ("succeeded", "cached") and source.step.cache_key is not None:
            key = (source.environment_id, source.step.cache_key)
            self.recent_cache[key] = (origin, value or {}, now)
            self.recent_cache.move_to_end(key)
            if len(self.recent_cache) > FINISHED_CACHE_SIZE:
                self.recent_cache.popitem(last=False)
        for linked_id in self.links.pop(source.id, ()):
            linked = self.live.get(linked_id)
            if linked is None:
                continue
            linked.linked_to = None
            if state in ("succeeded", "cached"):
                self._finish(linked, "cached", value=value, reused_from=origin)
            else:  # failed results are never reused
                self.queue[linked.id] = None

    def _reusable(
        self, run_id: str, key: str, environment_id: int
    ) -> tuple[int, dict[str, Any]] | None:
        """An earlier success in the run with this reuse key, made in the environment
        or an ancestor: (the execution that computed it, its value)."""
        ancestry = self._ancestry(environment_id)
        with self.engine.connect() as c:
            row = c.execute(
                select(T_EXECUTION.c.id, T_RESULT.c.value, T_RESULT.c.reused_from_id)
                .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
                .join(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
                .where(T_STEP.c.run_id == run_id, T_STEP.c.reuse_key == key)
                .where(T_EXECUTION.c.environment_id.in_(ancestry))
                .where(T_RESULT.c.state.in_(("succeeded", "cached")))
                .order_by(T_RESULT.c.created_at.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return (row.reused_from_id or row.id, row.value)

    def _memo_hit(self, run_id: str, key: str) -> str | None:
        """The latest execution of the run's step with this memo key, if any."""
        first = self.memo_steps.get((run_id, key))
        if first is None:
            with self.engine.connect() as c:
                number = c.execute(
                    select(T_STEP.c.number)
                    .where(T_STEP.c.run_id == run_id, T_STEP.c.memo_key == key)
                    .order_by(T_STEP.c.number)
                    .limit(1)
                ).scalar()
            if number is None:
                return None
            first = self.memo_steps[(run_id, key)] = f"{run_id}:{number}:1"
        first_id = self._execution_id(first)
        latest = self._latest(first_id)
        # Usually the first attempt itself: no lookup of the newer one's reference.
        return first if latest == first_id else self._ref_of(latest)
