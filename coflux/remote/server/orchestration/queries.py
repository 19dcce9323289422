"""Read-only views of a project's runs, for the API; safe beside the orchestrator (WAL)."""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from ....errors import NotFound
from .. import rawjson
from ..tables import (
    T_ASSET,
    T_DEPENDENCY,
    T_ENV,
    T_EXECUTION,
    T_LOG,
    T_MANIFEST,
    T_RESULT,
    T_RUN,
    T_STEP,
)
from .progress import run_state, steps_unfinished, unfinished_runs
from .steps import STEP_FACTS


def iso(timestamp: float | None) -> str | None:
    """``datetime.fromtimestamp(timestamp, UTC).isoformat()``, computed from a
    cached whole second (a 10,000-step run formats 30,000 timestamps)."""
    if timestamp is None:
        return None
    fraction, whole = math.modf(timestamp)
    micro = round(fraction * 1e6)  # as datetime rounds: half to even
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    second = _iso_second(int(whole))
    return f"{second}.{micro:06d}+00:00" if micro else f"{second}+00:00"


@functools.lru_cache(maxsize=4096)
def _iso_second(whole: int) -> str:
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _state(result_state: str | None, assigned_at: float | None) -> str:
    if result_state is not None:
        return result_state
    return "assigned" if assigned_at is not None else "queued"


def _environments(c: Connection) -> dict[int, str]:
    return {row.id: row.name for row in c.execute(select(T_ENV.c.id, T_ENV.c.name))}


def list_runs(
    c: Connection, environment_id: int, limit: int = 100, live: set[str] | None = None
) -> list[dict[str, Any]]:
    """The newest runs of an environment, each with its state (see ``progress``)
    as the environment ran it: a branch's re-run of a step (its root included)
    is the branch's, and changes nothing here. ``live``: the runs the
    orchestrator has live executions of in the environment, which saves
    reading every execution of every run listed."""
    names = _environments(c)
    runs = c.execute(
        select(T_RUN)
        .where(T_RUN.c.environment_id == environment_id)
        .order_by(T_RUN.c.created_at.desc())
        .limit(limit)
    ).all()
    if not runs:
        return []
    rows = c.execute(
        select(
            T_STEP.c.run_id,
            T_STEP.c.repository,
            T_STEP.c.target,
            T_EXECUTION.c.attempt,
            T_EXECUTION.c.assigned_at,
            T_RESULT.c.state,
        )
        .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_STEP.c.number == 1)
        .where(T_STEP.c.run_id.in_([r.id for r in runs]))
        .where(T_EXECUTION.c.environment_id == environment_id)
        .order_by(T_EXECUTION.c.attempt)
    ).all()
    latest: dict[str, Any] = {row.run_id: row for row in rows}
    ids = [r.id for r in runs]
    unfinished = (
        live.intersection(ids) if live is not None else unfinished_runs(c, ids, environment_id)
    )
    out = []
    for run in runs:
        step = latest.get(run.id)
        state = _state(step.state, step.assigned_at) if step else "queued"
        out.append(
            {
                "id": run.id,
                "workflow": f"{step.repository}:{step.target}" if step else None,
                "environment": names.get(run.environment_id),
                "state": run_state(state, run.id in unfinished),
                "created_at": iso(run.created_at),
            }
        )
    return out


def run_summary(c: Connection, run_id: str, unfinished: bool | None = None) -> dict[str, Any]:
    """A run's ID, environment and state, without its steps. ``unfinished`` (whether
    any execution of it is live) is read from the orchestrator's memory when the
    caller knows it: the query scans every step of the run (0.4 s a poll of a
    100,000-step run on a loaded machine, on the server's event loop)."""
    run = c.execute(select(T_RUN).where(T_RUN.c.id == run_id)).first()
    if run is None:
        raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")
    latest = c.execute(
        select(T_EXECUTION.c.assigned_at, T_RESULT.c.state)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_STEP.c.run_id == run_id, T_STEP.c.number == 1)
        .order_by(T_EXECUTION.c.attempt.desc())
        .limit(1)
    ).first()
    state = _state(latest.state, latest.assigned_at) if latest else "queued"
    return {
        "id": run_id,
        "environment": _environments(c).get(run.environment_id),
        "state": run_state(
            state, bool(unfinished_runs(c, [run_id])) if unfinished is None else unfinished
        ),
    }


def get_run(
    c: Connection, run_id: str, view: list[int] | None = None, raw: bool = False
) -> dict[str, Any]:
    """A run with its steps and their executions, in the shape of ``runs show --json``.

    With ``view`` (an environment and its ancestors, nearest first) the run is
    shown as that environment sees it: only executions made in those
    environments, and, for each step, the steps called by its executions in
    the environment of its latest such execution (all attempts there: a retry
    or a resumption uses calls of earlier attempts). So a branch that re-ran a
    production step sees its re-run's calls, and production still sees its own.

    Values are left as stored (serialised); the caller decides how to display them.
    With ``raw``, arguments, values and errors are their stored JSON text, as
    ``RawJSON`` (for ``rawjson.dumps``), never decoded.
    """
    names = _environments(c)
    run, steps, executions = _run_rows(c, run_id, raw)
    stored = rawjson.raw if raw else _same
    if view is not None:
        steps, executions = _as_seen(steps, executions, set(view))
    by_step: dict[int, list[Any]] = defaultdict(list)
    refs: dict[int, str] = {}
    numbers = {s.id: s.number for s in steps}
    for e in executions:
        by_step[e.step_id].append(e)
        refs[e.id] = f"{run_id}:{numbers[e.step_id]}:{e.attempt}"
    # Executions of other runs: cache sources (and callers of spawned workflows).
    refs.update(_references(c, _outside(steps, executions) - refs.keys()))
    out_steps = []
    for s in steps:
        out_executions = []
        for e in by_step[s.id]:
            out_executions.append(
                {
                    "id": refs[e.id],
                    "environment": names.get(e.environment_id),
                    "state": _state(e.state, e.assigned_at),
                    "value": stored(e.value),
                    "error": stored(e.error),
                    "reused_from": refs.get(e.reused_from_id) if e.reused_from_id else None,
                    "created_at": iso(e.created_at),
                    "started_at": iso(e.started_at),
                    "finished_at": iso(e.finished_at),
                    "commit": e.git_commit,
                    "dirty": e.git_dirty,
                }
            )
        out_steps.append(
            {
                "id": f"{run_id}:{s.number}",
                "target": f"{s.repository}:{s.target}",
                "type": s.type,
                "parent": refs.get(s.parent_execution_id) if s.parent_execution_id else None,
                "arguments": stored(s.arguments),
                "executions": out_executions,
            }
        )
    initial = out_steps[0]["executions"][-1] if out_steps and out_steps[0]["executions"] else None
    return {
        "id": run_id,
        "environment": names.get(run.environment_id),
        "view": names.get(view[0]) if view else None,
        "workflow": out_steps[0]["target"] if out_steps else None,
        "state": run_state(initial["state"] if initial else None, steps_unfinished(out_steps)),
        "created_at": iso(run.created_at),
        "steps": out_steps,
    }


def _as_seen(steps: list[Any], executions: list[Any], seen: set[int]) -> tuple[list, list]:
    """The steps and executions of a run that the environments ``seen`` see."""
    in_run = {e.id: e for e in executions}
    visible = [e for e in executions if e.environment_id in seen]
    latest: dict[int, Any] = {}
    for e in visible:  # ordered by attempt: the last one wins
        latest[e.step_id] = e
    shown_steps: list[Any] = []
    shown: set[int] = set()
    for step in steps:  # callers come before the steps they call
        if step.id not in latest:
            continue
        caller = in_run.get(step.parent_execution_id)
        if caller is not None and (
            caller.step_id not in shown
            or caller.environment_id != latest[caller.step_id].environment_id
        ):
            # Called by an execution this view doesn't show, or one superseded by
            # a later execution in a nearer environment (a branch's re-run).
            continue
        shown_steps.append(step)
        shown.add(step.id)
    return shown_steps, [e for e in visible if e.step_id in shown]


#: Text in one page of log messages (roughly: templates and values as stored).
LOG_PAGE_BYTES = 2 * 1024 * 1024


def get_logs(
    c: Connection, run_id: str, step: int | None = None, after: int = 0, limit: int = 10000
) -> list[dict[str, Any]]:
    """Log messages of a run (or one step) in the order they arrived: a page of
    at most ``limit`` messages and about ``LOG_PAGE_BYTES`` of text (so a run of
    huge lines never builds one huge response); ``after`` is the last id of the
    previous page, and an empty page means there is no more."""
    page_ids = (
        select(T_LOG.c.id)
        .join(T_EXECUTION, T_EXECUTION.c.id == T_LOG.c.execution_id)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_STEP.c.run_id == run_id)
        .where(T_LOG.c.id > after)
        # In arrival order: ids page exactly (timestamps come from many machines).
        .order_by(T_LOG.c.id)
        .limit(limit)
    )
    if step is not None:
        page_ids = page_ids.where(T_STEP.c.number == step)
    # Ids first, from the index alone, then the rows they name, read only as far
    # as the page's byte budget: sorting whole rows made the database copy every
    # remaining message of the run for each page (0.4 s a page, against 15 ms).
    # Values as stored (JSON text), spliced into the page by ``rawjson.dumps``:
    # decoding each to encode it again was most of a page's time.
    columns = [rawjson.as_text(column) for column in T_LOG.c]
    query = (
        select(*columns, T_STEP.c.number, T_EXECUTION.c.attempt)
        .join(T_EXECUTION, T_EXECUTION.c.id == T_LOG.c.execution_id)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_LOG.c.id.in_(page_ids.scalar_subquery()))
        .order_by(T_LOG.c.id)
    )
    page: list[dict[str, Any]] = []
    size = 0
    for r in c.execute(query):
        page.append(
            {
                "id": r.id,
                "execution_id": f"{run_id}:{r.number}:{r.attempt}",
                "timestamp": iso(r.timestamp),
                "level": r.level,
                "template": r.template,
                "values": rawjson.raw(r.values),
            }
        )
        size += len(r.template or "") + len(r.values or "")
        if size > LOG_PAGE_BYTES:
            break
    if not page and c.execute(select(T_RUN.c.id).where(T_RUN.c.id == run_id)).first() is None:
        raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")
    return page


def export_run(c: Connection, run_id: str) -> dict[str, Any]:
    """A run as immutable facts (the ``RunExport`` shape), executions named by reference."""
    names = _environments(c)
    run, steps, executions = _run_rows(c, run_id)
    numbers = {s.id: s.number for s in steps}
    refs = {e.id: f"{run_id}:{numbers[e.step_id]}:{e.attempt}" for e in executions}
    refs.update(_references(c, _outside(steps, executions) - refs.keys()))
    ids = list(refs)
    dependencies = c.execute(select(T_DEPENDENCY).where(T_DEPENDENCY.c.execution_id.in_(ids))).all()
    refs.update(_references(c, {d.dependency_id for d in dependencies} - refs.keys()))
    logs = c.execute(
        select(T_LOG)
        .where(T_LOG.c.execution_id.in_([e.id for e in executions]))
        .order_by(T_LOG.c.id)
    ).all()
    assets = c.execute(
        select(T_ASSET)
        .where(T_ASSET.c.execution_id.in_([e.id for e in executions]))
        .order_by(T_ASSET.c.id)
    ).all()
    return {
        "format": 1,
        "run": {
            "id": run_id,
            "environment": names[run.environment_id],
            "created_at": run.created_at,
        },
        "steps": [
            {
                "number": s.number,
                "parent": refs.get(s.parent_execution_id) if s.parent_execution_id else None,
                **{name: getattr(s, name) for name in STEP_FACTS[1:]},
            }
            for s in steps
        ],
        "executions": [
            {
                "step": numbers[e.step_id],
                "attempt": e.attempt,
                "environment": names[e.environment_id],
                "created_at": e.created_at,
                "execute_after": e.execute_after,
                "arguments": e.arguments,
                "checkpoint": e.checkpoint,
                "assigned_at": e.assigned_at,
                "started_at": e.started_at,
                "incremental": e.incremental,
                "result": None
                if e.state is None
                else {
                    "state": e.state,
                    "value": e.value,
                    "error": e.error,
                    "reused_from": refs.get(e.reused_from_id) if e.reused_from_id else None,
                    "created_at": e.finished_at,
                },
            }
            for e in executions
        ],
        "dependencies": [
            {"execution": refs[d.execution_id], "dependency": refs[d.dependency_id]}
            for d in dependencies
            if d.dependency_id in refs
        ],
        "logs": [
            {
                "execution": refs[entry.execution_id],
                "sequence": entry.sequence,
                "timestamp": entry.timestamp,
                "level": entry.level,
                "template": entry.template,
                "values": entry.values,
            }
            for entry in logs
        ],
        "assets": [
            {
                "execution": refs[a.execution_id],
                "ref": a.ref,
                "path": a.path,
                "files": a.files,
                "size": a.size,
                "created_at": a.created_at,
            }
            for a in assets
        ],
    }


def _same(value: Any) -> Any:
    return value


def _run_rows(c: Connection, run_id: str, raw: bool = False) -> tuple[Any, list[Any], list[Any]]:
    """A run's row, its steps in order, and their executions with their results
    (with ``raw``, JSON columns as their stored text)."""
    column = rawjson.as_text if raw else _same
    run = c.execute(select(T_RUN).where(T_RUN.c.id == run_id)).first()
    if run is None:
        raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")
    steps = c.execute(
        select(*(column(col) for col in T_STEP.c))
        .where(T_STEP.c.run_id == run_id)
        .order_by(T_STEP.c.number)
    ).all()
    executions = c.execute(
        select(
            *(column(col) for col in T_EXECUTION.c),
            T_RESULT.c.state,
            column(T_RESULT.c.value),
            column(T_RESULT.c.error),
            T_RESULT.c.reused_from_id,
            T_RESULT.c.created_at.label("finished_at"),
        )
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_STEP.c.run_id == run_id)
        .order_by(T_EXECUTION.c.step_id, T_EXECUTION.c.attempt)
    ).all()
    # Each query sees what was committed when it ran: a step committed between
    # the two shows its executions without itself. Those wait for the next read.
    known = {s.id for s in steps}
    return run, list(steps), [e for e in executions if e.step_id in known]


def _outside(steps: list[Any], executions: list[Any]) -> set[int]:
    """Executions a run's steps and results point at: callers and reuse sources."""
    return {s.parent_execution_id for s in steps if s.parent_execution_id} | {
        e.reused_from_id for e in executions if e.reused_from_id
    }


def _references(c: Connection, ids: set[int]) -> dict[int, str]:
    """``RUN:N:A`` of executions by id (of any run)."""
    if not ids:
        return {}
    rows = c.execute(
        select(T_EXECUTION.c.id, T_EXECUTION.c.attempt, T_STEP.c.run_id, T_STEP.c.number)
        .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
        .where(T_EXECUTION.c.id.in_(list(ids)))
    )
    return {r.id: f"{r.run_id}:{r.number}:{r.attempt}" for r in rows}


def run_dependencies(c: Connection, run_id: str) -> list[tuple[str, str]]:
    """(execution, execution it was passed or waited for), ``RUN:N:A`` each, within a run."""
    _, steps, executions = _run_rows(c, run_id)
    numbers = {s.id: s.number for s in steps}
    refs = {e.id: f"{run_id}:{numbers[e.step_id]}:{e.attempt}" for e in executions}
    rows = c.execute(select(T_DEPENDENCY).where(T_DEPENDENCY.c.execution_id.in_(list(refs))))
    return [(refs[r.execution_id], refs[r.dependency_id]) for r in rows if r.dependency_id in refs]


def visible_targets(c: Connection, lineage: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Each repository's targets as an environment sees them: registered there, or
    in its nearest ancestor (``lineage`` is the environment, then its bases)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for environment_id in lineage:
        rows = c.execute(
            select(T_MANIFEST.c.repository, T_MANIFEST.c.targets)
            .where(T_MANIFEST.c.environment_id == environment_id)
            .order_by(T_MANIFEST.c.id)
        )
        here = {row.repository: row.targets for row in rows}  # the newest row wins
        for repository, targets in here.items():
            found.setdefault(repository, targets)
    return dict(sorted(found.items()))


def registrations(c: Connection, lineage: list[int]) -> list[dict[str, Any]]:
    """Each repository's registration an environment serves (its own, else its nearest
    ancestor's, ``lineage`` as for :func:`visible_targets`): where it was registered,
    its targets' names, the git commit it came from, whether the tree was dirty, and when."""
    found: dict[str, dict[str, Any]] = {}
    for environment_id in lineage:
        rows = c.execute(
            select(T_MANIFEST)
            .where(T_MANIFEST.c.environment_id == environment_id)
            .order_by(T_MANIFEST.c.id)
        )
        here = {row.repository: row for row in rows}  # the newest row wins
        for repository, row in here.items():
            found.setdefault(
                repository,
                {
                    "repository": repository,
                    "environment_id": environment_id,
                    "targets": [t["name"] for t in row.targets],
                    "commit": row.git_commit,
                    "dirty": row.git_dirty,
                    "registered_at": iso(row.created_at),
                },
            )
    return [found[r] for r in sorted(found)]


def made_before(c: Connection, execution_ids: list[int], before: float) -> set[int]:
    """Which of ``execution_ids`` were created at or before ``before``."""
    rows = c.execute(
        select(T_EXECUTION.c.id)
        .where(T_EXECUTION.c.id.in_(execution_ids))
        .where(T_EXECUTION.c.created_at <= before)
    )
    return {row.id for row in rows}
