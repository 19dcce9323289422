"""Reusing work: cache hits and links, memoised steps, deferred calls.

The rules that decide when a new step or execution refers to an existing
result instead of running. They decide and keep their slots in the live
index; the state machine (``machine``) carries out what they decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from ..blobcheck import lost_blob
from ..blobstores import ProjectBlobs, blobs_of
from ..settings import Settings
from . import lookups
from .clock import Clock
from .environments import Environments
from .index import LiveIndex
from .state import FINISHED_CACHE_SIZE, LiveExecution


@dataclass(frozen=True)
class CacheLookup:
    """What a cached step's first execution finds: a pending execution it is now
    linked to, a result to reuse (source execution, value), or nothing; with a
    warning for its log when a result was found but can't be reused."""

    linked: bool = False
    hit: tuple[int, dict[str, Any]] | None = None
    warning: str | None = None


class ReuseRules:
    def __init__(
        self,
        project: str,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        index: LiveIndex,
        environments: Environments,
    ) -> None:
        self.project = project
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.index = index
        self.environments = environments
        self._blobs: ProjectBlobs | None = None

    def _lost(self, value: dict[str, Any]) -> str | None:
        """Why the blob a cached value is in can't be read, if it is in one. An
        inline value (most of them) needs no store: opening one per hit cost more
        than the rest of the hit's look-up."""
        if not isinstance(value.get("blob"), str):
            return None
        if self._blobs is None:
            self._blobs = blobs_of(self.settings, self.project)
        return lost_blob(self._blobs, value)

    # --- defer ----------------------------------------------------------------

    def deferred_by(self, execution: LiveExecution, key: str) -> LiveExecution | None:
        """The older execution with the same defer key that ``execution`` replaces
        (one not started yet), if any; ``execution`` is now the one to replace."""
        slot = (execution.environment_id, key)
        older = self.index.live.get(self.index.pending_defer.get(slot, -1))
        self.index.pending_defer[slot] = execution.id
        if older is not None and older.state == "queued" and older.linked_to is None:
            return older
        return None

    # --- cache ----------------------------------------------------------------

    def look_up_cache(self, execution: LiveExecution) -> CacheLookup:
        """Reuse a result with the same cache key: now if there is one, later
        (linked) if one is pending, in the environment or its nearest ancestor."""
        key = execution.step.cache_key
        assert key is not None
        max_age = (execution.step.options.get("cache") or {}).get("max_age")
        oldest = self.clock.time() - max_age if max_age is not None else None
        for environment_id in self.environments.ancestry(execution.environment_id):
            pending = self.index.pending_cache.get((environment_id, key))
            if pending is not None and pending in self.index.live:
                execution.linked_to = pending
                self.index.links.setdefault(pending, set()).add(execution.id)
                return CacheLookup(linked=True)
            found = self._cached_result(environment_id, key, oldest)
            if found is not None:
                source_id, value = found
                lost = self._lost(value)
                if lost is None:
                    return CacheLookup(hit=found)
                # A lost blob is a cache miss: the step executes again, and its
                # result becomes the one later calls reuse.
                self.index.recent_cache.pop((environment_id, key), None)
                return CacheLookup(
                    warning=f"the cached result of {self.index.ref_of(source_id)} can't be "
                    f"reused ({lost}); executing again"
                )
        return CacheLookup()

    def _cached_result(
        self, environment_id: int, key: str, oldest: float | None
    ) -> tuple[int, dict[str, Any]] | None:
        recent = self.index.recent_cache.get((environment_id, key))
        if recent is not None:
            source_id, value, finished_at = recent
            return (source_id, value) if oldest is None or finished_at >= oldest else None
        with self.engine.connect() as c:
            return lookups.cached_result(c, environment_id, key, oldest)

    def pending(self, execution: LiveExecution) -> None:
        """A cached step's execution will run: later calls with its key link to it."""
        if execution.step.cache_key is not None:
            self.index.pending_cache[(execution.environment_id, execution.step.cache_key)] = (
                execution.id
            )

    def ended(self, execution: LiveExecution) -> None:
        """It is no longer pending, nor linked to anything."""
        step = execution.step
        if step.cache_key is not None:
            key = (execution.environment_id, step.cache_key)
            if self.index.pending_cache.get(key) == execution.id:
                del self.index.pending_cache[key]
        if execution.linked_to is not None:
            self.index.links.get(execution.linked_to, set()).discard(execution.id)

    def release_links(
        self,
        source: LiveExecution,
        state: str,
        value: dict[str, Any] | None,
        now: float,
        origin: int,
    ) -> list[LiveExecution]:
        """The executions linked by cache key to ``source`` that now reuse its
        success (the caller finishes them); after a failure they are queued to
        run themselves. ``origin`` computed the value (for a cached one, its source)."""
        succeeded = state in ("succeeded", "cached")
        if succeeded and source.step.cache_key is not None:
            key = (source.environment_id, source.step.cache_key)
            self.index.recent_cache[key] = (origin, value or {}, now)
            self.index.recent_cache.move_to_end(key)
            if len(self.index.recent_cache) > FINISHED_CACHE_SIZE:
                self.index.recent_cache.popitem(last=False)
        reusing = []
        for linked_id in self.index.links.pop(source.id, ()):
            linked = self.index.live.get(linked_id)
            if linked is None:
                continue
            linked.linked_to = None
            if succeeded:
                reusing.append(linked)
            else:  # failed results are never reused
                self.index.queue[linked.id] = None
        return reusing

    # --- incremental re-runs and memo ------------------------------------------

    def reusable(
        self, run_id: str, key: str, environment_id: int
    ) -> tuple[int, dict[str, Any]] | None:
        """An earlier success in the run with this reuse key, made in the environment
        or an ancestor: (the execution that computed it, its value)."""
        with self.engine.connect() as c:
            return lookups.reusable(c, run_id, key, self.environments.ancestry(environment_id))

    def memoised(self, run_id: str, key: str, number: int) -> None:
        """The run's first step with the key is its memo (as the database lookup finds)."""
        self.index.memo_steps.setdefault((run_id, key), f"{run_id}:{number}:1")

    def memo_hit(self, run_id: str, key: str) -> str | None:
        """The latest execution of the run's step with this memo key, if any."""
        first = self.index.memo_steps.get((run_id, key))
        if first is None:
            with self.engine.connect() as c:
                number = lookups.first_memo_step(c, run_id, key)
            if number is None:
                return None
            first = self.index.memo_steps[(run_id, key)] = f"{run_id}:{number}:1"
        first_id = self.index.execution_id(first)
        latest = self.index.latest(first_id)
        # Usually the first attempt itself: no lookup of the newer one's reference.
        return first if latest == first_id else self.index.ref_of(latest)
