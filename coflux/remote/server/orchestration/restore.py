"""Rebuilding, after a restart, what the orchestrator keeps only in memory.

``ProjectOrchestrator.load`` reads the live executions back from the
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

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, select

from ....errors import CofluxError
from ..tables import T_DEPENDENCY, T_EXECUTION, T_RESULT
from .keys import defer_key, references

#: Outcomes another execution may have replaced (a retry, a resumption, a newer call).
REPLACED_STATES = ("failed", "abandoned", "suspended", "deferred")

if TYPE_CHECKING:
    from .project import ProjectOrchestrator
    from .state import LiveExecution


def rebuild(orchestrator: ProjectOrchestrator) -> None:
    """Derive the in-memory state of the live executions just loaded."""
    restored = sorted(orchestrator.live.values(), key=lambda e: e.id)
    suspended_before = _resumptions(orchestrator, restored)
    for execution in restored:
        _restore_defer(orchestrator, execution)
        _restore_cache(orchestrator, execution)
    for execution in restored:
        if execution.state != "queued":
            continue
        waits = set(_waited_arguments(orchestrator, execution))
        if execution.id in suspended_before:
            waits |= _suspense(orchestrator, execution)
        for dependency in waits:
            if dependency in orchestrator.live and dependency != execution.id:
                execution.wait_for.add(dependency)
                orchestrator.held_by.setdefault(dependency, set()).add(execution.id)


def _restore_defer(orchestrator: ProjectOrchestrator, execution: LiveExecution) -> None:
    step = execution.step
    if not step.options.get("defer"):
        return
    try:
        spec = orchestrator.find_target(execution.environment_id, step.repository, step.target)
    except CofluxError:
        return  # no longer registered: nothing newer can defer it
    step.defer_key = defer_key(step.repository, spec, step.arguments)
    if step.defer_key is not None:
        # In order of creation: the newest one is what a newer call replaces.
        orchestrator.pending_defer[(execution.environment_id, step.defer_key)] = execution.id


def _restore_cache(orchestrator: ProjectOrchestrator, execution: LiveExecution) -> None:
    key = execution.step.cache_key
    if key is None:
        return
    if execution.attempt == 1 and execution.state == "queued":
        for environment_id in orchestrator._ancestry(execution.environment_id):
            pending = orchestrator.pending_cache.get((environment_id, key))
            if pending is not None and pending in orchestrator.live:
                execution.linked_to = pending
                orchestrator.links.setdefault(pending, set()).add(execution.id)
                orchestrator.queue.pop(execution.id, None)
                return
    orchestrator.pending_cache[(execution.environment_id, key)] = execution.id


def _live_attempt(orchestrator: ProjectOrchestrator, ref: str) -> int | None:
    """The live execution a reference stands for: itself, or a later attempt of
    its step (a retry that replaced it)."""
    id = orchestrator.live_refs.get(ref)
    if id is not None:
        return id
    try:
        id = orchestrator._execution_id(ref)
    except CofluxError:
        return None
    later = orchestrator._later_attempt(id)
    return later if later in orchestrator.live else None


def _waited_arguments(orchestrator: ProjectOrchestrator, execution: LiveExecution) -> list[int]:
    step = execution.step
    wait = step.options.get("wait_indexes") or []
    refs = references([step.arguments[i] for i in wait if i < len(step.arguments)])
    found = [_live_attempt(orchestrator, ref) for ref in refs]
    return [id for id in found if id is not None]


def _resumptions(orchestrator: ProjectOrchestrator, restored: list[LiveExecution]) -> set[int]:
    """The restored queued executions whose previous attempt was suspended."""
    candidates = {(e.step.id, e.attempt - 1): e.id for e in restored if e.attempt > 1}
    if not candidates:
        return set()
    with orchestrator.engine.connect() as c:
        rows = c.execute(
            select(T_EXECUTION.c.step_id, T_EXECUTION.c.attempt)
            .join(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
            .where(T_EXECUTION.c.step_id.in_({step for step, _ in candidates}))
            .where(T_RESULT.c.state == "suspended")
        ).all()
    return {
        candidates[(r.step_id, r.attempt)] for r in rows if (r.step_id, r.attempt) in candidates
    }


def _suspense(orchestrator: ProjectOrchestrator, execution: LiveExecution) -> set[int]:
    """What the suspended attempt before ``execution`` waited for: the
    dependencies recorded on ``execution`` other than its arguments."""
    own = {_live_attempt(orchestrator, ref) for ref in references(execution.step.arguments)}
    with orchestrator.engine.connect() as c:
        recorded = c.execute(
            select(T_DEPENDENCY.c.dependency_id).where(T_DEPENDENCY.c.execution_id == execution.id)
        ).scalars()
        waits = set()
        for dependency in recorded:
            if dependency in orchestrator.live:
                waits.add(dependency)
                continue
            later = orchestrator._later_attempt(dependency)
            if later in orchestrator.live:
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


def deferred_to(engine: Engine, execution_id: int) -> int | None:
    """The newer call that deferred this execution (its one dependency)."""
    with engine.connect() as c:
        return c.execute(
            select(T_DEPENDENCY.c.dependency_id)
            .where(T_DEPENDENCY.c.execution_id == execution_id)
            .order_by(T_DEPENDENCY.c.dependency_id.desc())
            .limit(1)
        ).scalar()


def follow_replaced(
    orchestrator: ProjectOrchestrator, id: int, result: dict[str, Any] | None
) -> tuple[int, dict[str, Any] | None]:
    """From a finished execution and its stored outcome to the one that
    replaced it (a later attempt of its step, or the newer call that deferred
    it), and on, as far as the chain goes; the outcome is None for a live one."""
    while result is not None and result["state"] in REPLACED_STATES:
        later = (
            deferred_to(orchestrator.engine, id)
            if result["state"] == "deferred"
            else orchestrator._later_attempt(id)
        )
        if later is None:
            break
        orchestrator.successors[id] = later
        id = orchestrator._latest(later)
        result = None if id in orchestrator.live else orchestrator._stored_result(id)
    return id, result
