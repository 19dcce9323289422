"""The web UI's pages: projects, an environment, a run (and its live body), asset files.

Every URL the CLI prints opens here. Pages are rendered on the server from the
same queries as the API; the browser's JavaScript only polls a run's body while
it is active and calls the API for the Run, Re-run and Cancel buttons.
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..deps import ProjectDep, ProjectsDep, VisibleDep
from ..orchestration import queries
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
) -> Response:
    environments = environment_list(project)
    names = [e["name"] for e in environments]
    env = env or ("production" if "production" in names else (names[0] if names else None))
    if env is None:
        return templates.TemplateResponse(
            request, "projects.html", {"projects": [project.name], "project": project.name}
        )
    environment_id = project.environment_id(env, archived=True)
    lineage = project._ancestry(environment_id)
    with project.engine.connect() as c:
        runs = queries.list_runs(c, environment_id, 100)
        targets = queries.visible_targets(c, lineage)
    workflows = [
        {**t, "repository": repository}
        for repository, found in targets.items()
        for t in found
        if t["type"] == "workflow"
    ]
    shown = [
        r
        for r in runs
        if (not workflow or r["workflow"] == workflow) and (not state or r["state"] == state)
    ]
    context = {
        "project": project.name,
        "env": env,
        "environments": environments,
        "runs": shown[:50],
        "filters": {"workflow": workflow, "state": state},
        "workflow_names": sorted({r["workflow"] for r in runs if r["workflow"]}),
        "workflows": workflows,
        "agents": [a for a in project.list_agents() if a["environment"] == env],
        "tree": _tree(project.name, environments, env),
    }
    return templates.TemplateResponse(request, "environment.html", context)


def run_view(
    project: ProjectDep,
    run: str,
    env: str | None = Query(None, max_length=200),
    step: int = Query(1, ge=1),
    filters: LogFiltersDep = None,  # type: ignore[assignment]
    expand: str = Query("", max_length=2000),
) -> dict[str, Any]:
    """What the run page and its live body show, from the URL's path and query."""
    return run_context(project, run, env, step, filters, expand)


RunViewDep = Annotated[dict[str, Any], Depends(run_view)]


@router.get("/projects/{project}/runs/{run}", response_class=HTMLResponse)
def run_page(request: Request, context: RunViewDep) -> Response:
    return templates.TemplateResponse(request, "run.html", context)


@router.get("/projects/{project}/runs/{run}/live", response_class=HTMLResponse)
def run_body(request: Request, context: RunViewDep) -> Response:
    """The run page's body alone, which the page polls while the run is active."""
    return templates.TemplateResponse(request, "_run_body.html", context)


def _tree(project: str, environments: list[dict[str, Any]], current: str) -> str:
    """Nested lists of links for the environment tree."""
    parts, depth = ["<ul>"], 0
    for e in environments:
        while e["depth"] > depth:
            parts.append("<ul>")
            depth += 1
        while e["depth"] < depth:
            parts.append("</ul>")
            depth -= 1
        name = html.escape(e["name"])
        css = ' class="current" aria-current="page"' if e["name"] == current else ""
        url = f"/projects/{html.escape(project)}?env={quote(e['name'], safe='/')}"
        parts.append(f'<li><a href="{url}"{css}>{name}</a></li>')
    parts.append("</ul>" * (depth + 1))
    return "".join(parts)
