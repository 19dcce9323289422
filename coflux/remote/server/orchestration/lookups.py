"""The orchestrator's look-ups in what is stored: pure SQL, one question each.

Each takes a connection and answers from committed rows only; the
orchestrator asks here when its memory (``index.LiveIndex``) doesn't know.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select

from ....records.references import StepRef, parse_execution_ref
from ..tables import T_DEPENDENCY, T_EXECUTION, T_RESULT, T_RUN, T_STEP
from .keys import result_message


def execution_by_ref(c: Connection, ref: str) -> int | None:
    """The id of the execution ``RUN:N:A`` (raises InvalidInput for a malformed one)."""
    parsed = parse_execution_ref(ref)
    return c.execute(
        select(T_EXECUTION.c.id)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_STEP.c.run_id == parsed.run_id)
        .where(T_STEP.c.number == parsed.step)
        .where(T_EXECUTION.c.attempt == parsed.attempt)
    ).scalar()


def ref_of(c: Connection, execution_id: int) -> str:
    row = c.execute(
        select(T_STEP.c.run_id, T_STEP.c.number, T_EXECUTION.c.attempt)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_EXECUTION.c.id == execution_id)
    ).one()
    return f"{row.run_id}:{row.number}:{row.attempt}"


def stored_result(c: Connection, execution_id: int) -> dict[str, Any] | None:
    row = c.execute(select(T_RESULT).where(T_RESULT.c.execution_id == execution_id)).first()
    return None if row is None else result_message(row.state, row.value, row.error)


def later_attempt(c: Connection, execution_id: int) -> int | None:
    """The newest attempt of the same step, when newer than this execution."""
    newer = T_EXECUTION.alias("newer")
    return c.execute(
        select(newer.c.id)
        .join(T_EXECUTION, T_EXECUTION.c.step_id == newer.c.step_id)
        .where(T_EXECUTION.c.id == execution_id, newer.c.attempt > T_EXECUTION.c.attempt)
        .order_by(newer.c.attempt.desc())
        .limit(1)
    ).scalar()


def deferred_to(c: Connection, execution_id: int) -> int | None:
    """The newer call that deferred this execution (its one dependency)."""
    return c.execute(
        select(T_DEPENDENCY.c.dependency_id)
        .where(T_DEPENDENCY.c.execution_id == execution_id)
        .order_by(T_DEPENDENCY.c.dependency_id.desc())
        .limit(1)
    ).scalar()


def code_hash_of(c: Connection, execution_id: int) -> str | None:
    """The code hash of the step an execution belongs to."""
    return c.execute(
        select(T_STEP.c.code_hash)
        .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
        .where(T_EXECUTION.c.id == execution_id)
    ).scalar()


def step_called(c: Connection, callers: list[int], call_index: int) -> str | None:
    """The first execution of the step one of ``callers`` made at ``call_index``."""
    row = c.execute(
        select(T_STEP.c.run_id, T_STEP.c.number)
        .where(T_STEP.c.parent_execution_id.in_(callers))
        .where(T_STEP.c.call_index == call_index)
    ).first()
    return f"{row.run_id}:{row.number}:1" if row else None


def last_step_number(c: Connection, run_id: str) -> int:
    return (
        c.execute(select(func.max(T_STEP.c.number)).where(T_STEP.c.run_id == run_id)).scalar() or 0
    )


def run_by_key(c: Connection, key: str) -> str | None:
    return c.execute(select(T_RUN.c.id).where(T_RUN.c.idempotency_key == key)).scalar()


def rerun_by_key(c: Connection, key: str) -> str | None:
    row = c.execute(
        select(T_STEP.c.run_id, T_STEP.c.number, T_EXECUTION.c.attempt)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_EXECUTION.c.idempotency_key == key)
    ).first()
    return f"{row.run_id}:{row.number}:{row.attempt}" if row else None


def run_environment(c: Connection, run_id: str) -> int | None:
    """The environment a run was made in (None: no such run)."""
    return c.execute(select(T_RUN.c.environment_id).where(T_RUN.c.id == run_id)).scalar()


def step_to_rerun(c: Connection, step: StepRef) -> tuple[int, Any, int] | None:
    """For a re-run of ``step``, in one query: the environment its run was made
    in, the step's row (None: the run has no such step) and its last attempt;
    None when there is no such run."""
    last = (
        select(func.max(T_EXECUTION.c.attempt))
        .where(T_EXECUTION.c.step_id == T_STEP.c.id)
        .scalar_subquery()
    )
    row = c.execute(
        select(T_RUN.c.environment_id.label("run_environment_id"), T_STEP, last.label("last"))
        .select_from(T_RUN)
        .outerjoin(T_STEP, and_(T_STEP.c.run_id == T_RUN.c.id, T_STEP.c.number == step.number))
        .where(T_RUN.c.id == step.run_id)
    ).first()
    if row is None:
        return None
    return row.run_environment_id, row if row.id is not None else None, row.last or 0


def cached_result(
    c: Connection, environment_id: int, key: str, oldest: float | None
) -> tuple[int, dict[str, Any]] | None:
    """The newest success with this cache key in the environment, made at or after
    ``oldest``: (the execution that computed it, its value)."""
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
    row = c.execute(query).first()
    return None if row is None else (row.reused_from_id or row.id, row.value)


def reusable(
    c: Connection, run_id: str, key: str, ancestry: list[int]
) -> tuple[int, dict[str, Any]] | None:
    """An earlier success in the run with this reuse key, made in one of
    ``ancestry``: (the execution that computed it, its value)."""
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
    return None if row is None else (row.reused_from_id or row.id, row.value)


def first_memo_step(c: Connection, run_id: str, key: str) -> int | None:
    """The number of the run's first step with this memo key."""
    return c.execute(
        select(T_STEP.c.number)
        .where(T_STEP.c.run_id == run_id, T_STEP.c.memo_key == key)
        .order_by(T_STEP.c.number)
        .limit(1)
    ).scalar()
