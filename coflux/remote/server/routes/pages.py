"""The web UI's pages: projects, an environment, a run (and its live body), asset files.

Every URL the CLI prints opens here. Pages are rendered on the server from the
same queries as the API; the browser's JavaScript only polls a run's body while
it is active and calls the API for the Run, Re-run and Cancel buttons.
"""

from __future__ import annotations

import html
import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from ....assets import PREFIX, decode, parse_reference
from ....cache import BlobStore
from ....errors import BlobError, NotFound
from ..deps import ProjectDep, ProjectsDep, VisibleDep
from ..orchestration import assets as asset_queries
from ..orchestration import progress, queries
from ..orchestration.project import ProjectOrchestrator
from ..web import TEMPLATES, views

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES))


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
    environments = _environments(project)
    names = [e["name"] for e in environments]
    env = env or ("production" if "production" in names else (names[0] if names else None))
    if env is None:
        return templates.TemplateResponse(
            request, "projects.html", {"projects": [project.name], "project": project.name}
        )
    environment_id = project.environment_id(env, archived=True)
    lineage = project._ancestry(environment_id)
    with project.engine.connect() as c:
        runs = queries.list_runs(c, environment_id, 100, progress.live_runs(project))
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
    logs: str = Query("all", pattern="^(all|step)$"),
) -> dict[str, Any]:
    """What the run page and its live body show, from the URL's path and query."""
    return _run_context(project, run, env, step, logs)


RunViewDep = Annotated[dict[str, Any], Depends(run_view)]


@router.get("/projects/{project}/runs/{run}", response_class=HTMLResponse)
def run_page(request: Request, context: RunViewDep) -> Response:
    return templates.TemplateResponse(request, "run.html", context)


@router.get("/projects/{project}/runs/{run}/live", response_class=HTMLResponse)
def run_body(request: Request, context: RunViewDep) -> Response:
    """The run page's body alone, which the page polls while the run is active."""
    return templates.TemplateResponse(request, "_run_body.html", context)


@router.get("/projects/{project}/assets/{ref}/files/{path:path}")
def asset_file(request: Request, project: ProjectDep, ref: str, path: str) -> Response:
    """One file of an asset, streamed from its blobs (named by the manifest, never by the URL)."""
    key = parse_reference(ref)
    store = BlobStore(request.app.state.settings.blobs_dir(project.name))
    try:
        entries = decode(store.get_bytes(key))
    except BlobError:
        raise NotFound(f"unknown asset {PREFIX}{key}") from None
    entry = next((e for e in entries if e.path == path), None)
    if entry is None:
        raise NotFound(f"asset {PREFIX}{key} has no file {path[:200]!r}")
    for blob in entry.blobs:
        if not store.has(blob):
            raise NotFound(f"a blob of {path[:200]!r} is not on the server")

    def content() -> Any:
        for blob in entry.blobs:
            yield from store.open_chunks(blob)

    name = quote(entry.path.rsplit("/", 1)[-1])
    return StreamingResponse(
        content(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(entry.size),
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
        },
    )


def _run_context(
    project: ProjectOrchestrator, run: str, env: str | None, step: int, logs: str
) -> dict[str, Any]:
    run_id = run.upper()
    view = project.view_of(run_id, env, strict=False) if env else None
    with project.engine.connect() as c:
        detail = queries.get_run(c, run_id, view)
        dependencies = queries.run_dependencies(c, run_id)
        chosen = detail["steps"][min(step, len(detail["steps"])) - 1] if detail["steps"] else None
        number = int(chosen["id"].rsplit(":", 1)[1]) if chosen else 1
        log_step = number if logs == "step" else None
        log_entries = queries.get_logs(c, run_id, log_step, limit=views.LOG_LIMIT)
        # A page ends at LOG_LIMIT messages or at its size in bytes: is there more?
        logs_cut = bool(
            log_entries and queries.get_logs(c, run_id, log_step, log_entries[-1]["id"], limit=1)
        )
        run_assets = asset_queries.run_assets(c, run_id)
    env = detail["view"] or detail["environment"]
    selected = _selected(project, chosen, run_assets)
    return {
        "project": project.name,
        "env": env,
        "environments": _environments(project),
        "run": detail,
        "active": views.is_active(detail),
        "graph": views.graph(detail, dependencies),
        "bars": views.timeline(detail, time.time()),
        "selected": selected,
        "logs": [{**entry, "text": views.log_line(entry)} for entry in log_entries],
        "logs_cut": logs_cut,
        "logs_step": number if logs == "step" else None,
    }


def _selected(
    project: ProjectOrchestrator, step: dict[str, Any] | None, run_assets: list[dict[str, Any]]
) -> dict[str, Any]:
    if step is None:
        return {"id": "", "number": 1, "target": "", "arguments": [], "executions": []}
    executions = []
    for execution in step["executions"]:
        text, cut = views.shown(execution["value"])
        executions.append({**execution, "result_text": text, "result_cut": cut})
    mine = {e["id"] for e in step["executions"]}
    return {
        "id": step["id"],
        "number": int(step["id"].rsplit(":", 1)[1]),
        "target": step["target"],
        "arguments": [{"text": views.shown(a)[0]} for a in step.get("arguments") or []],
        "executions": executions,
        "assets": [
            {**asset, "entries": _asset_entries(project, asset["ref"])}
            for asset in run_assets
            if asset["execution"] in mine
        ],
    }


def _asset_entries(project: ProjectOrchestrator, ref: str) -> list[dict[str, Any]]:
    store = BlobStore(project.settings.blobs_dir(project.name))
    try:
        return [e.to_dict() for e in decode(store.get_bytes(parse_reference(ref)))][:200]
    except BlobError:
        return []


def _environments(project: ProjectOrchestrator) -> list[dict[str, Any]]:
    """The environment tree, flattened depth first, each with its depth."""
    described = project.list_environments()
    children: dict[str | None, list[str]] = {}
    for e in described:
        children.setdefault(e["base"], []).append(e["name"])
    out: list[dict[str, Any]] = []

    def walk(base: str | None, depth: int) -> None:
        for name in sorted(children.get(base, [])):
            out.append({"name": name, "depth": depth})
            walk(name, depth + 1)

    walk(None, 0)
    return out


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
