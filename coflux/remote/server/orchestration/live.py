"""What moved in a run since a moment: the read behind a run page's live updates.

A page that follows a run asks, after each change event, for the executions
created, assigned, started or finished since its last look, as its
environment sees them, and the counts of the groups of repeated calls they
belong to; it patches those nodes in place. Only when the run's shape changed
(a new execution: a retry, a re-run, or a new step) does it fetch the whole body.
Reading no JSON column, this costs milliseconds for a run of 5,000 steps.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from ....records.states import run_state_of
from ..tables import T_EXECUTION, T_RESULT, T_STEP

#: Siblings with one target drawn as a group past this many (as ``web.graph``).
GROUP_MIN = 8


def _state(state: str | None, assigned_at: float | None) -> str:
    return state or ("assigned" if assigned_at is not None else "queued")


def execution_count(c: Connection, run_id: str, view: set[int] | None) -> int:
    """How many executions of the run the view's environments made: when it moves,
    the page's shape did (a retry, a re-run, a new step)."""
    query = (
        select(func.count())
        .select_from(T_EXECUTION.join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id))
        .where(T_STEP.c.run_id == run_id)
    )
    if view is not None:
        query = query.where(T_EXECUTION.c.environment_id.in_(view))
    return int(c.execute(query).scalar() or 0)


def changes(
    c: Connection, run_id: str, since: float, view: set[int] | None, known: int
) -> dict[str, Any]:
    """What moved since ``since``; ``known``: how many executions the page drew."""
    moved = (
        select(
            T_STEP.c.id.label("step_id"),
            T_STEP.c.number,
            T_STEP.c.parent_execution_id,
            T_STEP.c.repository,
            T_STEP.c.target,
            T_EXECUTION.c.attempt,
            T_EXECUTION.c.environment_id,
            T_EXECUTION.c.created_at,
            T_EXECUTION.c.assigned_at,
            T_EXECUTION.c.started_at,
            T_RESULT.c.created_at.label("finished_at"),
            T_RESULT.c.state,
            T_RESULT.c.reused_from_id,
        )
        .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_STEP.c.run_id == run_id)
        .where(
            or_(
                T_EXECUTION.c.created_at > since,
                T_EXECUTION.c.assigned_at > since,
                T_EXECUTION.c.started_at > since,
                T_RESULT.c.created_at > since,
            )
        )
        .order_by(T_STEP.c.number, T_EXECUTION.c.attempt)
    )
    rows = [r for r in c.execute(moved) if view is None or r.environment_id in view]
    count = execution_count(c, run_id, view)
    steps: dict[int, dict[str, Any]] = {}
    for r in rows:  # by attempt: the latest wins
        steps[r.number] = {
            "id": f"{run_id}:{r.number}",
            "state": _state(r.state, r.assigned_at),
            "attempts": r.attempt,
            "reused": r.reused_from_id is not None,
            # The timeline's bar of this attempt is drawn from these (epoch seconds).
            "started_at": r.started_at,
            "finished_at": r.finished_at,
        }
    groups = []
    for parent, repository, target in {
        (r.parent_execution_id, r.repository, r.target) for r in rows if r.parent_execution_id
    }:
        group = _group(c, run_id, parent, repository, target, view)
        if group is not None:
            groups.append(group)
    unfinished = (
        select(func.count())
        .select_from(
            T_EXECUTION.join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id).outerjoin(
                T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id
            )
        )
        .where(T_STEP.c.run_id == run_id, T_RESULT.c.execution_id.is_(None))
    )
    if view is not None:
        unfinished = unfinished.where(T_EXECUTION.c.environment_id.in_(view))
    root = steps.get(1)
    return {
        "structure": count != known,
        "executions": count,
        "active": bool(c.execute(unfinished).scalar()),
        "run_state": run_state_of(root["state"]) if root else None,
        "steps": list(steps.values()),
        "groups": groups,
        "failed": any(s["state"] == "failed" for s in steps.values()),
    }


def _group(
    c: Connection, run_id: str, parent: int, repository: str, target: str, view: set[int] | None
) -> dict[str, Any] | None:
    """The counts of a group of siblings by their latest execution's state, counted
    by the database (a fan-out of 5,000 is one aggregate, not 5,000 rows)."""
    other = T_EXECUTION.alias("other")
    latest = select(func.max(other.c.attempt)).where(other.c.step_id == T_STEP.c.id)
    if view is not None:
        latest = latest.where(other.c.environment_id.in_(view))
    rows = c.execute(
        select(
            T_RESULT.c.state,
            T_EXECUTION.c.assigned_at.is_not(None).label("assigned"),
            func.count(),
            func.min(T_STEP.c.number),
        )
        .select_from(T_STEP)
        .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(
            and_(
                T_STEP.c.run_id == run_id,
                T_STEP.c.parent_execution_id == parent,
                T_STEP.c.repository == repository,
                T_STEP.c.target == target,
            )
        )
        .where(T_EXECUTION.c.attempt == latest.scalar_subquery())
        .group_by(T_RESULT.c.state, T_EXECUTION.c.assigned_at.is_not(None))
    ).all()
    counts: Counter[str] = Counter()
    for state, assigned, n, _ in rows:
        counts[_state(state, 1 if assigned else None)] += n
    size = sum(counts.values())
    if size <= GROUP_MIN:
        return None
    return {
        "key": f"g{min(r[3] for r in rows)}",
        "state": group_state(counts),
        "label": ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
        "size": size,
    }


def group_state(counts: Counter[str]) -> str:
    """The state a group shows: its worst or least finished member's."""
    for state in ("failed", "abandoned", "running", "assigned", "queued", "cancelled"):
        if counts.get(state):
            return state
    return "succeeded"
