"""What moved in a run since a moment: the read behind a run page's live updates.

A page that follows a run asks, after each change event, for the executions
created, assigned, started or finished since its last look, as its
environment sees them, and the counts of the groups of repeated calls they
belong to; it patches those nodes in place. Only when the run's shape changed
(a new execution: a retry, a re-run, or a new step) does it fetch the whole body.
Reading no JSON column, this costs milliseconds for a run of 5,000 steps.

An update is three reads, none per step: the executions that moved, the run's
counts (executions, and those unfinished) in one pass, and one aggregate per
group the moved ones belong to. The statements are built once (with bound
parameters): building them on each call was a quarter of an update's CPU.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, or_, select

from ....records.states import run_state_of
from ..tables import T_EXECUTION, T_RESULT, T_STEP

#: Siblings with one target drawn as a group past this many (as ``web.graph``).
GROUP_MIN = 8

_STEP_EXECUTIONS = T_STEP.join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id).outerjoin(
    T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id
)


def _state(state: str | None, assigned_at: float | None) -> str:
    return state or ("assigned" if assigned_at is not None else "queued")


def _in_view(query: Select, viewed: bool) -> Select:
    if viewed:
        return query.where(T_EXECUTION.c.environment_id.in_(bindparam("view", expanding=True)))
    return query


def _params(run_id: str, view: set[int] | None, **more: Any) -> dict[str, Any]:
    params = {"run_id": run_id, **more}
    if view is not None:
        params["view"] = sorted(view)
    return params


@functools.cache
def _moved(viewed: bool) -> Select:
    since: Any = bindparam("since")
    query = (
        select(
            T_STEP.c.number,
            T_STEP.c.parent_execution_id,
            T_STEP.c.repository,
            T_STEP.c.target,
            T_EXECUTION.c.attempt,
            T_EXECUTION.c.assigned_at,
            T_EXECUTION.c.started_at,
            T_RESULT.c.created_at.label("finished_at"),
            T_RESULT.c.state,
            T_RESULT.c.reused_from_id,
        )
        .select_from(_STEP_EXECUTIONS)
        .where(T_STEP.c.run_id == bindparam("run_id"))
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
    return _in_view(query, viewed)


@functools.cache
def _counts(viewed: bool) -> Select:
    """How many executions of the run the view's environments made, and how many
    of those have no result yet (one pass)."""
    query = (
        select(func.count(), func.count() - func.count(T_RESULT.c.execution_id))
        .select_from(_STEP_EXECUTIONS)
        .where(T_STEP.c.run_id == bindparam("run_id"))
    )
    return _in_view(query, viewed)


@functools.cache
def _group(viewed: bool) -> Select:
    """A group's executions in the view, counted by state. The run is checked
    without its index (``coalesce``): by it, the planner read every step of the
    run rather than the caller's children."""
    query = (
        select(
            T_RESULT.c.state,
            T_EXECUTION.c.assigned_at.is_not(None).label("assigned"),
            func.count(),
            func.min(T_STEP.c.number),
            func.max(T_EXECUTION.c.attempt),
        )
        .select_from(_STEP_EXECUTIONS)
        .where(
            T_STEP.c.parent_execution_id == bindparam("parent"),
            T_STEP.c.repository == bindparam("repository"),
            T_STEP.c.target == bindparam("target"),
            func.coalesce(T_STEP.c.run_id, "") == bindparam("run_id"),
        )
        .group_by(T_RESULT.c.state, T_EXECUTION.c.assigned_at.is_not(None))
    )
    return _in_view(query, viewed)


@functools.cache
def _retried(viewed: bool) -> Select:
    """The executions (in the view) of a group's members that have more than one."""
    again = (
        select(T_EXECUTION.c.step_id)
        .select_from(T_STEP.join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id))
        .where(
            T_STEP.c.parent_execution_id == bindparam("parent"),
            T_STEP.c.repository == bindparam("repository"),
            T_STEP.c.target == bindparam("target"),
            func.coalesce(T_STEP.c.run_id, "") == bindparam("run_id"),
            T_EXECUTION.c.attempt > 1,
        )
    )
    query = (
        select(T_EXECUTION.c.step_id, T_EXECUTION.c.assigned_at, T_RESULT.c.state)
        .select_from(_STEP_EXECUTIONS)
        .where(T_EXECUTION.c.step_id.in_(again.scalar_subquery()))
        .order_by(T_EXECUTION.c.step_id, T_EXECUTION.c.attempt)
    )
    return _in_view(query, viewed)


def execution_count(c: Connection, run_id: str, view: set[int] | None) -> int:
    """How many executions of the run the view's environments made: when it moves,
    the page's shape did (a retry, a re-run, a new step)."""
    return int(c.execute(_counts(view is not None), _params(run_id, view)).one()[0] or 0)


def changes(
    c: Connection, run_id: str, since: float, view: set[int] | None, known: int
) -> dict[str, Any]:
    """What moved since ``since``; ``known``: how many executions the page drew."""
    viewed = view is not None
    rows = c.execute(_moved(viewed), _params(run_id, view, since=since)).all()
    count, unfinished = c.execute(_counts(viewed), _params(run_id, view)).one()
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
    for parent, repository, target in sorted(
        {(r.parent_execution_id, r.repository, r.target) for r in rows if r.parent_execution_id}
    ):
        group = _group_counts(c, run_id, parent, repository, target, view)
        if group is not None:
            groups.append(group)
    root = steps.get(1)
    return {
        "structure": count != known,
        "executions": int(count or 0),
        "active": bool(unfinished),
        "run_state": run_state_of(root["state"]) if root else None,
        "steps": list(steps.values()),
        "groups": groups,
        "failed": any(s["state"] == "failed" for s in steps.values()),
    }


def _group_counts(
    c: Connection, run_id: str, parent: int, repository: str, target: str, view: set[int] | None
) -> dict[str, Any] | None:
    """The counts of a group of siblings by their latest execution's state, counted
    by the database (a fan-out of 5,000 is one aggregate, not 5,000 rows).

    Every execution in the view is counted, then those a later attempt replaced
    are taken off: they belong to the few members retried or re-run, read only
    when the group has any. (A correlated "latest attempt" per member cost more
    than the aggregate itself on a fan-out of 5,000.)"""
    params = _params(run_id, view, parent=parent, repository=repository, target=target)
    viewed = view is not None
    counts: Counter[str] = Counter()
    first, retried = None, False
    for state, assigned, n, number, attempts in c.execute(_group(viewed), params):
        counts[_state(state, 1 if assigned else None)] += n
        first = number if first is None else min(first, number)
        retried = retried or attempts > 1
    if retried:
        previous: tuple[int, str] | None = None
        for step_id, assigned_at, state in c.execute(_retried(viewed), params):
            if previous is not None and previous[0] == step_id:
                counts[previous[1]] -= 1  # replaced by this later attempt
            previous = (step_id, _state(state, assigned_at))
        counts = +counts  # states left at zero are not shown
    size = sum(counts.values())
    if size <= GROUP_MIN:
        return None
    return {
        "key": f"g{first}",
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
