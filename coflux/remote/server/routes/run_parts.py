"""Parts of a run page fetched on their own: one value's whole tree, the log
panel under new filters, and the stream of change events that drives live updates.

The events are server-sent events: the server looks at a cheap fingerprint of
the run (how many executions, results and log lines it has) every
``EVENT_INTERVAL`` seconds and sends ``change`` when it moves, ``end`` once the
run has finished; the page then fetches the body and replaces the sections
that differ. A comment line opens the stream at once, so a page behind a
proxy that buffers it notices the silence and polls instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from markupsafe import Markup
from sqlalchemy import func, select

from ....errors import BlobError, NotFound
from ..blobstores import blobs_of
from ..deps import ProjectDep, RunDep, StepDep
from ..orchestration import browse, live
from ..orchestration.project import ProjectOrchestrator
from ..tables import T_EXECUTION, T_LOG, T_RESULT, T_STEP
from ..web.run_page import LogFiltersDep, run_context
from ..web.templating import templates
from ..web.values import Links, render, tree
from ..web.views import log_line

router = APIRouter(include_in_schema=False)

#: Seconds between looks at a followed run.
EVENT_INTERVAL = 0.25
#: Largest blob value drawn as a tree in a page (bigger ones: the raw link).
VALUE_TREE_BYTES = 8 * 1024 * 1024


@router.get("/projects/{project}/runs/{run}/logs", response_class=HTMLResponse)
def log_panel(
    request: Request,
    project: ProjectDep,
    run_id: RunDep,
    filters: LogFiltersDep,
    env: str | None = Query(None, max_length=200),
    step: int = Query(1, ge=1),
) -> Response:
    """The log panel alone, under the filters of the query."""
    context = run_context(project, run_id, env, step, filters)
    return templates.TemplateResponse(request, "_logs.html", context)


@router.get("/projects/{project}/runs/{run}/steps/{step}/value", response_class=HTMLResponse)
def value_part(
    request: Request,
    project: ProjectDep,
    step: StepDep,
    attempt: int | None = Query(None, ge=1),
    argument: int | None = Query(None, ge=0),
    env: str | None = Query(None, max_length=200),
) -> Response:
    """One value's whole tree (a result, or an argument), read from its blob if it has one."""
    with project.engine.connect() as c:
        value = browse.stored_value(c, step, attempt, argument)
    links = Links(project.name, env or "")
    if value.get("format") == "json" and value.get("blob"):
        store = blobs_of(request.app.state.settings, project.name)
        try:
            if store.size(value["blob"]) > VALUE_TREE_BYTES:
                raise NotFound("too large to draw")
            data = json.loads(store.get_bytes(value["blob"]))
        except (BlobError, NotFound, OSError, ValueError):
            raw = links.blob(value["blob"])
            return HTMLResponse(
                Markup(
                    '<p>Too large to draw here: <a href="{}" download>the raw JSON</a>.</p>'
                ).format(raw)
            )
        body = Markup(
            '<div class="value">{}</div><p><a href="{}" download>raw JSON</a></p>'
        ).format(tree(data, list(value.get("references") or []), links), links.blob(value["blob"]))
        return HTMLResponse(body)
    return HTMLResponse(render(value, links))


@router.get("/projects/{project}/runs/{run}/changes")
def run_changes(
    request: Request,
    project: ProjectDep,
    run_id: RunDep,
    filters: LogFiltersDep,
    moved_since: float = Query(..., ge=0),
    after_log: int = Query(0, ge=0),
    known: int = Query(0, ge=0),
    env: str | None = Query(None, max_length=200),
    step: int = Query(1, ge=1),
    logs: int = Query(1, ge=0, le=1),
) -> Response:
    """What moved since ``moved_since`` (see ``orchestration.live``; ``known``: how many
    executions the page drew), and the log lines after
    ``after_log`` that pass the page's filters, drawn as the log panel draws them;
    ``logs=0`` (a panel cut at its limit, which appends nothing) skips them.

    A ``Server-Timing`` header says how long the server spent on it (wall and
    this thread's CPU, in ms): what a live update costs apart from the network,
    queueing and the browser (``bench.web`` reads it, as does a browser's devtools)."""
    began, cpu = time.perf_counter(), time.thread_time()
    now = time.time()
    view = set(project.view_of(run_id, env, strict=False)) if env else None
    with project.engine.connect() as c:
        moved = live.changes(c, run_id, moved_since, view, known)
        # Reading and drawing 200 lines a cut panel throws away was a third of
        # an update's server time on a big run.
        lines = (
            browse.filtered_logs(
                c,
                run_id,
                log_line,
                step=filters.step,
                level=filters.level,
                grep=filters.grep,
                since=browse.parse_since(filters.since),
                after=after_log,
                limit=200,
                # Of the view's environments (the drawn panel: of the executions
                # it shows; a line of one the view hides arriving live is rare).
                environments=view,
            )
            if logs
            else []
        )
    html = (
        templates.get_template("_log_lines.html").render(
            {"logs": lines, "env": env, "request": request}
        )
        if lines
        else ""
    )
    # Looks overlap by a second: a change committed while this one read is seen next time.
    body = {
        **moved,
        "now": now - 1.0,
        "logs": html,
        "last_log": lines[-1]["id"] if lines else after_log,
    }
    timing = (
        f"handler;dur={(time.perf_counter() - began) * 1000:.1f}, "
        f"cpu;dur={(time.thread_time() - cpu) * 1000:.1f}"
    )
    return JSONResponse(body, headers={"Server-Timing": timing, "Cache-Control": "no-store"})


def fingerprint(project: ProjectOrchestrator, run_id: str) -> tuple[Any, ...]:
    """What moves when a run changes: its executions, starts, results and log lines
    (one pass over the run's executions, and the newest log line from the index)."""
    with project.engine.connect() as c:
        counts = c.execute(
            select(
                func.count(T_EXECUTION.c.id),
                func.count(T_EXECUTION.c.assigned_at),
                func.count(T_EXECUTION.c.started_at),
                func.count(T_RESULT.c.execution_id),
                func.max(T_RESULT.c.created_at),
            )
            .select_from(T_STEP)
            .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
            .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
            .where(T_STEP.c.run_id == run_id)
        ).one()
        logs = c.execute(
            select(func.max(T_LOG.c.id))
            .select_from(T_STEP)
            .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
            .join(T_LOG, T_LOG.c.execution_id == T_EXECUTION.c.id)
            .where(T_STEP.c.run_id == run_id)
        ).scalar()
    # The last field: executions still without a result (none: the run is over).
    return (tuple(counts), logs, counts[0] - counts[3])


@router.get("/projects/{project}/runs/{run}/events")
async def run_events(request: Request, project: ProjectDep, run_id: RunDep) -> Response:
    """Server-sent events: ``change`` when the run moves, ``end`` once nothing in it is active."""
    first = await run_in_threadpool(fingerprint, project, run_id)
    if first[0][0] == 0:
        raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")

    async def stream() -> AsyncIterator[bytes]:
        # Padding past the size some proxies hold back, then a first event.
        yield b": " + b" " * 2048 + b"\n\nevent: hello\ndata: {}\n\n"
        last = first
        while not await request.is_disconnected():
            if not last[-1]:
                yield b"event: end\ndata: {}\n\n"
                return
            await asyncio.sleep(EVENT_INTERVAL)
            now = await run_in_threadpool(fingerprint, project, run_id)
            if now != last:
                last = now
                yield b"event: change\ndata: {}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
