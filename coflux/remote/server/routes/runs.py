"""Runs: submit, list, show, logs, cancel."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ....records.references import StepRef
from ...schemas import CancelRequest, RerunRequest, RunCreate, RunExport
from .. import rawjson
from ..deps import ProjectDep, RunDep, StepDep
from ..orchestration import browse, progress, queries
from ..web.views import log_line

router = APIRouter(prefix="/api/projects/{project}/runs")


def run_url(request: Request, project: str, run_id: str, environment: str | None) -> str:
    base = str(request.base_url).rstrip("/")
    query = f"?env={quote(environment, safe='/')}" if environment else ""
    return f"{base}/projects/{project}/runs/{run_id}{query}"


@router.post("", status_code=201)
async def submit(body: RunCreate, request: Request, project: ProjectDep) -> dict[str, str]:
    run_id = await project.submit(
        body.environment,
        body.repository,
        body.target,
        [a.model_dump(exclude_none=True) for a in body.arguments],
        body.idempotency_key,
    )
    return {"id": run_id, "url": run_url(request, project.name, run_id, body.environment)}


@router.get("")
def list_runs(
    environment: str,
    request: Request,
    project: ProjectDep,
    limit: int = Query(100, ge=1, le=10000),
) -> list[dict[str, Any]]:
    environment_id = project.environment_id(environment, archived=True)
    with project.engine.connect() as c:
        runs = queries.list_runs(
            c, environment_id, limit, progress.live_runs(project, environment_id)
        )
    for run in runs:
        run["url"] = run_url(request, project.name, run["id"], environment)
    return runs


@router.get("/{run}", response_class=JSONResponse)
def get_run(
    run_id: RunDep,
    request: Request,
    project: ProjectDep,
    environment: str | None = Query(None, max_length=200),
    strict: bool = False,
) -> Response:
    """A run with its steps; with ``environment``, as that environment sees it:
    for each step the executions made there or in its bases (see ``queries.get_run``)."""
    view = None
    if environment is not None:
        view = project.view_of(run_id, environment, strict)
    with project.engine.connect() as c:
        detail = queries.get_run(c, run_id, view, raw=True)
    detail["project"] = project.name
    shown = detail.get("view") or detail["environment"]
    detail["url"] = run_url(request, project.name, detail["id"], shown)
    # Plain JSON of the plain data, values spliced in as stored: FastAPI's
    # validation of a return value walks every nested value, and decoding the
    # stored values only to encode them again took a third of the time.
    return Response(rawjson.dumps(detail), media_type="application/json")


@router.get("/{run}/export")
def export_run(run_id: RunDep, project: ProjectDep) -> dict[str, Any]:
    """Everything recorded of a run, as facts another server can import."""
    with project.engine.connect() as c:
        return queries.export_run(c, run_id)


@router.post("/import")
async def import_run(body: RunExport, project: ProjectDep) -> dict[str, Any]:
    """Add a run made elsewhere (same ID); what is already here stays as it is."""
    return await project.import_run(body)


@router.get("/{run}/wait")
async def wait_for_run(
    run_id: RunDep,
    project: ProjectDep,
    timeout: float = Query(30, ge=0, le=300),
    step: int | None = Query(None, ge=1),
) -> dict[str, Any]:
    """Long poll: answer once the run (every step of it) or, with ``step``, that
    step has finished, or after ``timeout``."""
    finished = await project.wait_for_run(StepRef(run_id, step) if step else run_id, timeout)
    with project.engine.connect() as c:
        # Live or not from memory, after the commit the wait awaited.
        unfinished = run_id in project.index.live_by_run
        return {**queries.run_summary(c, run_id, unfinished), "step_finished": finished}


@router.get("/{run}/logs", response_class=JSONResponse)
def get_logs(
    run_id: RunDep,
    project: ProjectDep,
    step: int | None = Query(None, ge=1),
    after: int = Query(0, ge=0),
    level: str | None = Query(None, max_length=20),
    grep: str | None = Query(None, max_length=200),
    since: str | None = Query(None, max_length=40),
) -> Response:
    """A page of the run's log messages (an empty page: no more after ``after``);
    with ``level`` (that level and above), ``grep`` (text, any case) or ``since``
    (``10m``, or an ISO time), only those that pass, each with its step's target."""
    if level or grep or since:
        floor = browse.parse_since(since)
        with project.engine.connect() as c:
            page = browse.filtered_logs(
                c,
                run_id,
                log_line,
                step=step,
                level=browse.check_level(level),
                grep=grep,
                since=floor,
                after=after,
            )
        return JSONResponse(page)
    with project.engine.connect() as c:
        # Plain JSON, like `get_run`: validating megabytes of log lines cost more
        # than reading them, and each message's values go out as stored.
        page = queries.get_logs(c, run_id, step, after)
    return Response(rawjson.dumps(page), media_type="application/json")


@router.post("/{run}/steps/{step}/rerun", status_code=201)
async def rerun(
    step: StepDep, body: RerunRequest, request: Request, project: ProjectDep
) -> dict[str, str]:
    """A new execution of a step in an environment (the run's, or one based on it)."""
    execution = await project.rerun(step, body.environment, body.force, body.idempotency_key)
    # The key is the public answer's (an execution reference, RUN:N:A, under `execution_id`).
    url = run_url(request, project.name, step.run_id, body.environment)
    return {"execution_id": str(execution), "url": url}


@router.post("/{run}/cancel")
async def cancel(run_id: RunDep, body: CancelRequest, project: ProjectDep) -> dict[str, int]:
    target = StepRef(run_id, body.step) if body.step is not None else run_id
    cancelled = await project.cancel(target, body.before, body.idempotency_key)
    return {"cancelled": cancelled}
