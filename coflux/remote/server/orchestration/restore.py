"""Rebuilding, after a restart, what the orchestrator keeps only in memory.

``LiveIndex.rebuild`` reads the live executions back from the
database; what follows from them is worked out here again, as it was when
they were made, so a restart changes no outcome:

- single flight: a queued first attempt with the cache key of an earlier
  live execution (in its environment or a base) is linked to it again, not
  run itself (``pending_cache``, ``links``);
- defer: the newest live execution of each defer key is the one a newer call
  replaces (``pending_defer``);
- ``wait=``: a queued execution waits again for the live executions its
  waited-for arguments name (``wait_for``, ``held_by``);
- defer: a deferred execution's outcome is its successor's (recorded as
  its dependency when it was deferred, see ``deferred_to``);
- suspense: the next attempt of a suspended execution waits again for what
  the suspended one waited for (recorded as its dependencies when it
  suspended), and finds the steps the suspended attempts called
  (``resumed_attempts``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from ....errors import CofluxError
from ....records.targets import TargetSpec
from ..tables import T_DEPENDENCY, T_EXECUTION, T_RESULT
from .keys import defer_key, references
from .state import LiveExecution

if TYPE_CHECKING:  # the index calls ``derive``; only its type is needed here
    from .index import LiveIndex

#: Outcomes another execution may have replaced (a retry, a resumption, a newer call).
REPLACED_STATES = ("failed", "abandoned", "suspended", "deferred")


def derive(
    index: LiveIndex,
    ancestry: Callable[[int], list[int]],
    find_target: Callable[[int, str, str], TargetSpec],
) -> None:
    """Derive the in-memory state of the live executions just loaded."""
    restored = sorted(index.live.values(), key=lambda e: e.id)
    suspended_before = _resumptions(index, restored)
    for execution in restored:
        _restore_defer(index, execution, find_target)
        _restore_cache(index, execution, ancestry)
    for execution in restored:
        if execution.state != "queued":
            continue
        waits = set(_waited_arguments(index, execution))
        if execution.id in suspended_before:
            waits |= _suspense(index, execution)
        for dependency in waits:
            if dependency in index.live and dependency != execution.id:
                index.hold(execution, dependency)


def _restore_defer(
    index: LiveIndex,
    execution: LiveExecution,
    find_target: Callable[[int, str, str], TargetSpec],
) -> None:
    step = execution.step
    if not step.options.get("defer"):
        return
    try:
        spec = find_target(execution.environment_id, step.repository, step.target)
    except CofluxError:
        return  # no longer registered: nothing newer can defer it
    step.defer_key = defer_key(step.repository, spec, step.arguments)
    if step.defer_key is not None:
        # In order of creation: the newest one is what a newer call replaces.
        index.pending_defer[(execution.environment_id, step.defer_key)] = execution.id


def _restore_cache(
    index: LiveIndex, execution: LiveExecution, ancestry: Callable[[int], list[int]]
) -> None:
    key = execution.step.cache_key
    if key is None:
        return
    if execution.attempt == 1 and execution.state == "queued":
        for environment_id in ancestry(execution.environment_id):
            pending = index.pending_cache.get((environment_id, key))
            if pending is not None and pending in index.live:
                execution.linked_to = pending
                index.links.setdefault(pending, set()).add(execution.id)
                index.queue.pop(execution.id, None)
                return
    index.pending_cache[(execution.environment_id, key)] = execution.id


def _live_attempt(index: LiveIndex, ref: str) -> int | None:
    """The live execution a reference stands for: itself, or a later attempt of
    its step (a retry that replaced it)."""
    id = index.live_refs.get(ref)
    if id is not None:
        return id
    try:
        id = index.execution_id(ref)
    except CofluxError:
        return None
    later = index.later_attempt(id)
    return later if later in index.live else None


def _waited_arguments(index: LiveIndex, execution: LiveExecution) -> list[int]:
    step = execution.step
    wait = step.options.get("wait_indexes") or []
    refs = references([step.arguments[i] for i in wait if i < len(step.arguments)])
    found = [_live_attempt(index, ref) for ref in refs]
    return [id for id in found if id is not None]


def _resumptions(index: LiveIndex, restored: list[LiveExecution]) -> set[int]:
    """The restored queued executions whose previous attempt was suspended."""
    candidates = {(e.step.id, e.attempt - 1): e.id for e in restored if e.attempt > 1}
    if not candidates:
        return set()
    with index.engine.connect() as c:
        rows = c.execute(
            select(T_EXECUTION.c.step_id, T_EXECUTION.c.attempt)
            .join(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
            .where(T_EXECUTION.c.step_id.in_({step for step, _ in candidates}))
            .where(T_RESULT.c.state == "suspended")
        ).all()
    return {
        candidates[(r.step_id, r.attempt)] for r in rows if (r.step_id, r.attempt) in candidates
    }


def _suspense(index: LiveIndex, execution: LiveExecution) -> set[int]:
    """What the suspended attempt before ``execution`` waited for: the
    dependencies recorded on ``execution`` other than its arguments."""
    own = {_live_attempt(index, ref) for ref in references(execution.step.arguments)}
    with index.engine.connect() as c:
        recorded = list(
            c.execute(
                select(T_DEPENDENCY.c.dependency_id).where(
                    T_DEPENDENCY.c.execution_id == execution.id
                )
            ).scalars()
        )
    waits = set()
    for dependency in recorded:
        if dependency in index.live:
            waits.add(dependency)
            continue
        later = index.later_attempt(dependency)
        if later in index.live:
            waits.add(later)
    return waits - own


def resumed_attempts(c: Connection, step_id: int, attempt: int) -> list[int]:
    """The earlier attempts of a step whose calls attempt ``attempt`` inherits:
    those just before it that ended suspended (a retry starts afresh)."""
    rows = c.execute(
        select(T_EXECUTION.c.id, T_EXECUTION.c.attempt, T_RESULT.c.state)
        .join(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_EXECUTION.c.step_id == step_id, T_EXECUTION.c.attempt < attempt)
        .order_by(T_EXECUTION.c.attempt.desc())
    ).all()
    inherited: list[int] = []
    expected = attempt - 1
    for row in rows:
        if row.attempt != expected or row.state != "suspended":
            break
        inherited.append(row.id)
        expected -= 1
    return inherited
