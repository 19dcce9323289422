"""The web UI's pages: projects, an environment, a run (and its live body).

Every URL the CLI prints opens here. Pages are rendered on the server from the
same queries as the API (what they show: ``web/env_page.py``, ``web/run_page.py``);
the browser's JavaScript follows an active run, applies filters and calls the
API for the Run, Re-run and Cancel buttons. Parts of a run page fetched alone
are in ``run_parts.py``; asset pages in ``asset_pages.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..deps import ProjectDep, ProjectsDep, RunDep, VisibleDep
from ..web.env_page import environment_context
from ..web.run_page import LogFiltersDep, environment_list, run_context
from ..web.templating import templates

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/projects")


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, projects: ProjectsDep, visible: VisibleDep) -> Response:
    return templates.TemplateResponse(
        request, "projects.html", {"projects": projects.names(visible), "project": None}
    )


@router.get("/projects/{project}", response_class=HTMLResponse)
def environment_page(
    request: Request,
    project: ProjectDep,
    env: str | None = Query(None, max_length=200),
    workflow: str = Query("", max_length=400),
    state: str = Query("", max_length=20),
    q: str = Query("", max_length=200),
    since: str = Query("", max_length=10, alias="from"),
    until: str = Query("", max_length=10, alias="to"),
    before: str = Query("", max_length=80),
) -> Response:
    environments = environment_list(project)
    names = [e["name"] for e in environments]
    env = env or ("production" if "production" in names else (names[0] if names else None))
    if env is None:
        return templates.TemplateResponse(
            request, "projects.html", {"projects": [project.name], "project": project.name}
        )
    filters = {
        "workflow": workflow,
        "state": state,
        "q": q,
        "since": since,
        "until": until,
        "before": before,
    }
    context = environment_context(project, env, filters)
    return templates.TemplateResponse(request, "environment.html", context)


def run_view(
    project: ProjectDep,
    run_id: RunDep,
    filters: LogFiltersDep,
    env: str | None = Query(None, max_length=200),
    step: int = Query(1, ge=1),
    expand: str = Query("", max_length=2000),
) -> dict[str, Any]:
    """What the run page and its live body show, from the URL's path and query."""
    return run_context(project, run_id, env, step, filters, expand)


RunViewDep = Annotated[dict[str, Any], Depends(run_view)]


@router.get("/projects/{project}/runs/{run}", response_class=HTMLResponse)
def run_page(request: Request, context: RunViewDep) -> Response:
    return templates.TemplateResponse(request, "run.html", context)


@router.get("/projects/{project}/runs/{run}/live", response_class=HTMLResponse)
def run_body(request: Request, context: RunViewDep) -> Response:
    """The run page's body alone, which the page polls while the run is active."""
    return templates.TemplateResponse(request, "_run_body.html", context)
