"""Read queries for finding and reading work: filtered pages of runs and of log
messages, one value by its place, and the re-runs made in an environment.

Safe beside the orchestrator (WAL), like ``queries``; each page is bounded, so
a project of 100,000 runs or a run of a million log lines costs one page.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select, tuple_

from ....errors import InvalidInput, NotFound
from ....records.references import StepRef
from ..tables import T_DEPENDENCY, T_ENV, T_EXECUTION, T_LOG, T_RESULT, T_RUN, T_STEP
from .progress import run_state as progress_state
from .progress import unfinished_runs
from .queries import iso

#: Severity of each log level, for "this level and above" (captured output sits
#: beside the level it usually carries: stdout with info, stderr with warning).
LEVELS = {"debug": 0, "stdout": 1, "info": 1, "stderr": 2, "warning": 2, "error": 3}
RUN_STATES = ("running", "succeeded", "failed", "cancelled")


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or an ISO time."""
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return (now or time.time()) - float(match.group(1)) * factor
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--since {text[:40]!r} is neither a duration (90s, 10m, 2h, 1d) nor an ISO time "
            "(2026-01-31T12:00)"
        ) from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_level(level: str | None) -> str | None:
    if level and level not in LEVELS:
        raise InvalidInput(f"unknown log level {level[:20]!r}; use one of {', '.join(LEVELS)}")
    return level or None


def filtered_logs(
    c: Connection,
    run_id: str,
    fill: Any,
    *,
    step: int | None = None,
    level: str | None = None,
    grep: str | None = None,
    since: float | None = None,
    after: int = 0,
    limit: int = 1000,
    scan: int = 2000,
    environments: set[int] | None = None,
    shown: set[tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """A page of a run's log messages that pass the filters, each with its step's
    target and ``text`` (filled by ``fill``); ``after`` pages as in ``get_logs``.
    ``environments``: only of executions made there (a view of the run);
    ``shown``: only of these executions, as (step number, attempt).

    Level, step and time are filtered by the database; ``grep`` (case-insensitive,
    on the filled text) here, reading ``scan`` rows at a time until the page is
    full or the log ends, so an empty page still means there is no more.
    """
    if c.execute(select(T_RUN.c.id).where(T_RUN.c.id == run_id)).first() is None:
        raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")
    needle = grep.casefold() if grep else None
    page: list[dict[str, Any]] = []
    while len(page) < limit:
        query = (
            select(
                T_LOG, T_STEP.c.number, T_STEP.c.repository, T_STEP.c.target, T_EXECUTION.c.attempt
            )
            .join(T_EXECUTION, T_EXECUTION.c.id == T_LOG.c.execution_id)
            .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
            .where(T_STEP.c.run_id == run_id, T_LOG.c.id > after)
            .order_by(T_LOG.c.id)
            .limit(scan)
        )
        if step is not None:
            query = query.where(T_STEP.c.number == step)
        if level is not None:
            query = query.where(
                T_LOG.c.level.in_([k for k, v in LEVELS.items() if v >= LEVELS[level]])
            )
        if since is not None:
            query = query.where(T_LOG.c.timestamp >= since)
        if environments is not None:
            query = query.where(T_EXECUTION.c.environment_id.in_(sorted(environments)))
        rows = c.execute(query).all()
        for r in rows:
            if shown is not None and (r.number, r.attempt) not in shown:
                continue
            entry = {
                "id": r.id,
                "execution_id": f"{run_id}:{r.number}:{r.attempt}",
                "step": r.number,
                "target": f"{r.repository}:{r.target}",
                "timestamp": iso(r.timestamp),
                "level": r.level,
                "template": r.template,
                "values": r.values,
            }
            entry["text"] = fill(entry)
            if needle is None or needle in entry["text"].casefold():
                page.append(entry)
                if len(page) >= limit:
                    break
        if len(rows) < scan:
            break
        after = rows[-1].id
    return page


def failures(
    c: Connection,
    run_id: str,
    step: int | None = None,
    shown: set[tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """The run's failed executions, each as a log-like entry carrying its error and
    traceback, so a page's log shows why a step failed where it failed;
    ``shown``: only of these executions, as (step number, attempt)."""
    query = (
        select(
            T_STEP.c.number,
            T_STEP.c.repository,
            T_STEP.c.target,
            T_EXECUTION.c.attempt,
            T_RESULT.c.error,
            T_RESULT.c.created_at,
        )
        .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
        .join(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_STEP.c.run_id == run_id, T_RESULT.c.state == "failed")
        .order_by(T_RESULT.c.created_at)
    )
    if step is not None:
        query = query.where(T_STEP.c.number == step)
    out = []
    for r in c.execute(query):
        if shown is not None and (r.number, r.attempt) not in shown:
            continue
        error = r.error or {}
        out.append(
            {
                "id": None,
                "execution_id": f"{run_id}:{r.number}:{r.attempt}",
                "step": r.number,
                "target": f"{r.repository}:{r.target}",
                "timestamp": iso(r.created_at),
                "level": "error",
                "text": f"{error.get('type') or 'Error'}: {error.get('message') or ''}".strip(),
                "traceback": error.get("traceback"),
                "at": r.created_at,
            }
        )
    return out


def page_of_runs(
    c: Connection,
    environment_id: int,
    *,
    workflow: str | None = None,
    state: str | None = None,
    search: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 50,
    live: set[str] | None = None,
) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
    """Runs of an environment, newest first, that pass the filters, with their
    workflow, state and duration; and the cursor of the next page (None: last).

    Pages by (created_at, id) from the index on (environment, created_at), so a
    page costs the same on the first run as on the 100,000th. The state is the
    run's (see ``progress``: running while any step is unfinished, then its
    initial step's), so it is filtered here, reading runs in batches until the
    page is full. ``live``: the runs the orchestrator has live executions of in
    this environment (a branch's re-run of a step is the branch's: the run as
    its own environment ran it has finished).
    """
    if state and state not in RUN_STATES:
        raise InvalidInput(f"unknown run state {state[:20]!r}; use one of {', '.join(RUN_STATES)}")
    out: list[dict[str, Any]] = []
    cursor = before
    batch = max(limit * 2, 100)
    while len(out) < limit:
        query = (
            select(T_RUN.c.id, T_RUN.c.created_at, T_STEP.c.repository, T_STEP.c.target)
            .join(T_STEP, and_(T_STEP.c.run_id == T_RUN.c.id, T_STEP.c.number == 1))
            .where(T_RUN.c.environment_id == environment_id)
            .order_by(T_RUN.c.created_at.desc(), T_RUN.c.id.desc())
            .limit(batch)
        )
        if cursor is not None:
            query = query.where(tuple_(T_RUN.c.created_at, T_RUN.c.id) < tuple_(*cursor))
        if since is not None:
            query = query.where(T_RUN.c.created_at >= since)
        if until is not None:
            query = query.where(T_RUN.c.created_at < until)
        if workflow:
            repository, _, target = workflow.rpartition(":")
            query = query.where(T_STEP.c.target == target)
            if repository:
                query = query.where(T_STEP.c.repository == repository)
        if search:
            text = search.strip()
            like = f"%{_escape_like(text)}%"
            query = query.where(
                or_(
                    T_RUN.c.id.like(f"{_escape_like(text.upper())}%", escape="\\"),
                    # Any case, on PostgreSQL as on SQLite.
                    T_STEP.c.target.ilike(like, escape="\\"),
                    T_STEP.c.repository.ilike(like, escape="\\"),
                )
            )
        rows = c.execute(query).all()
        if not rows:
            cursor = None
            break
        ids = [r.id for r in rows]
        states = _initial_states(c, ids, environment_id)
        unfinished = (
            live.intersection(ids) if live is not None else unfinished_runs(c, ids, environment_id)
        )
        for r in rows:
            found = states.get(r.id)
            run_state = progress_state(found["state"] if found else None, r.id in unfinished)
            cursor = (r.created_at, r.id)
            if state and run_state != state:
                continue
            finished = found["finished_at"] if found and run_state != "running" else None
            out.append(
                {
                    "id": r.id,
                    "workflow": f"{r.repository}:{r.target}",
                    "state": run_state,
                    "created_at": iso(r.created_at),
                    "duration": None if finished is None else max(finished - r.created_at, 0),
                }
            )
            if len(out) >= limit:
                break
        if len(rows) < batch and len(out) < limit:
            cursor = None
            break
    return out, cursor


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _initial_states(
    c: Connection, run_ids: list[str], environment_id: int
) -> dict[str, dict[str, Any]]:
    """Each run's initial step's latest execution in the runs' own environment: a
    branch's re-run of it is the branch's, not what the run list says of the run
    (it showed the re-run's state and a duration to the re-run's end)."""
    rows = c.execute(
        select(T_STEP.c.run_id, T_EXECUTION.c.assigned_at, T_RESULT.c.state, T_RESULT.c.created_at)
        .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_STEP.c.number == 1, T_STEP.c.run_id.in_(run_ids))
        .where(T_EXECUTION.c.environment_id == environment_id)
        .order_by(T_EXECUTION.c.attempt)
    )
    out = {}
    for r in rows:  # by attempt: the latest wins
        state = r.state or ("assigned" if r.assigned_at is not None else "queued")
        out[r.run_id] = {"state": state, "finished_at": r.created_at}
    return out


def reruns_in(c: Connection, environment_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """Re-runs made in an environment, newest first: its executions of steps of
    runs made elsewhere, and its later executions of steps whose previous
    attempt had not failed (a retry follows a failure; a re-run needn't)."""
    previous = T_EXECUTION.alias("previous")
    previous_result = T_RESULT.alias("previous_result")
    rows = c.execute(
        select(
            T_STEP.c.run_id,
            T_STEP.c.number,
            T_STEP.c.repository,
            T_STEP.c.target,
            T_EXECUTION.c.attempt,
            T_EXECUTION.c.created_at,
            T_EXECUTION.c.assigned_at,
            T_RESULT.c.state,
            T_RUN.c.environment_id.label("run_environment_id"),
        )
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .join(T_RUN, T_RUN.c.id == T_STEP.c.run_id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .outerjoin(
            previous,
            and_(
                previous.c.step_id == T_EXECUTION.c.step_id,
                previous.c.attempt == T_EXECUTION.c.attempt - 1,
            ),
        )
        .outerjoin(previous_result, previous_result.c.execution_id == previous.c.id)
        .where(T_EXECUTION.c.environment_id == environment_id, T_EXECUTION.c.attempt > 1)
        .where(
            or_(
                T_RUN.c.environment_id != environment_id,
                previous_result.c.state.is_(None),
                previous_result.c.state != "failed",
            )
        )
        .order_by(T_EXECUTION.c.created_at.desc())
        .limit(limit)
    ).all()
    names = {r.id: r.name for r in c.execute(select(T_ENV.c.id, T_ENV.c.name))}
    return [
        {
            "execution": f"{r.run_id}:{r.number}:{r.attempt}",
            "run": r.run_id,
            "step": r.number,
            "target": f"{r.repository}:{r.target}",
            "state": r.state or ("assigned" if r.assigned_at is not None else "queued"),
            "run_environment": names.get(r.run_environment_id),
            "created_at": iso(r.created_at),
        }
        for r in rows
    ]


def stored_value(
    c: Connection, step: StepRef, attempt: int | None, argument: int | None
) -> dict[str, Any]:
    """One stored value by its place: a step's argument, or an execution's result."""
    row = c.execute(
        select(T_STEP.c.id, T_STEP.c.arguments).where(
            T_STEP.c.run_id == step.run_id, T_STEP.c.number == step.number
        )
    ).first()
    if row is None:
        raise NotFound(f"unknown step {step}")
    if argument is not None:
        if not 0 <= argument < len(row.arguments or []):
            raise NotFound(f"step {step} has no argument {argument}")
        return row.arguments[argument]
    value = c.execute(
        select(T_RESULT.c.value)
        .join(T_EXECUTION, T_EXECUTION.c.id == T_RESULT.c.execution_id)
        .where(T_EXECUTION.c.step_id == row.id, T_EXECUTION.c.attempt == (attempt or 1))
    ).scalar()
    if value is None:
        raise NotFound(f"execution {step.execution(attempt or 1)} has no value")
    return value


def run_dependencies(c: Connection, run_id: str) -> list[tuple[str, str]]:
    """(execution, execution it was passed or waited for), ``RUN:N:A`` each, within
    a run: as ``queries.run_dependencies``, from ids alone (no JSON column is read,
    which for a run of 5,000 steps was 0.4 s of its page)."""
    rows = c.execute(
        select(T_EXECUTION.c.id, T_EXECUTION.c.attempt, T_STEP.c.number)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_STEP.c.run_id == run_id)
    )
    refs = {r.id: f"{run_id}:{r.number}:{r.attempt}" for r in rows}
    if not refs:
        return []
    pairs = c.execute(
        select(T_DEPENDENCY.c.execution_id, T_DEPENDENCY.c.dependency_id)
        .join(T_EXECUTION, T_EXECUTION.c.id == T_DEPENDENCY.c.execution_id)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_STEP.c.run_id == run_id)
    )
    return [(refs[e], refs[d]) for e, d in pairs if e in refs and d in refs]
