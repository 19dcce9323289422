"""A run compared as two environments see it: the API (``runs diff``) and its page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from ....errors import InvalidInput
from ..deps import ProjectDep, RunDep
from ..orchestration.compare import compare
from ..orchestration.project import ProjectOrchestrator
from ..web.run_page import environment_list
from ..web.templating import templates

router = APIRouter()


def _compare(project: ProjectOrchestrator, run_id: str, a: str, b: str) -> dict[str, Any]:
    views = ((a, project.view_of(run_id, a, False)), (b, project.view_of(run_id, b, False)))
    with project.engine.connect() as c:
        return compare(c, run_id, views)


@router.get("/api/projects/{project}/runs/{run}/diff")
def run_diff(
    run_id: RunDep, project: ProjectDep, env: list[str] = Query(..., max_length=200)
) -> dict[str, Any]:
    """Step by step, what ``env`` B changed against ``env`` A (``?env=A&env=B``)."""
    if len(env) != 2:
        raise InvalidInput("give two environments: ?env=production&env=BRANCH")
    return _compare(project, run_id, env[0], env[1])


@router.get(
    "/projects/{project}/runs/{run}/compare", response_class=HTMLResponse, include_in_schema=False
)
def compare_page(
    request: Request,
    project: ProjectDep,
    run_id: RunDep,
    env: str = Query(..., max_length=200),
    base: str = Query(..., max_length=200),
) -> Response:
    result = _compare(project, run_id, base, env)
    context = {
        "project": project.name,
        "env": env,
        "base": base,
        "environments": environment_list(project),
        "diff": result,
    }
    return templates.TemplateResponse(request, "compare.html", context)
