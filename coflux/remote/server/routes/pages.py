"""Pages people open from the links the CLI prints (the full web UI grows here)."""

from __future__ import annotations

import html
import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ..deps import ProjectDep
from ..orchestration import queries

router = APIRouter()

_STATE_COLOURS = {
    "succeeded": "#1a7f37",
    "cached": "#1a7f37",
    "failed": "#cf222e",
    "abandoned": "#cf222e",
    "cancelled": "#6e7781",
    "queued": "#9a6700",
    "assigned": "#0969da",
}


def _shown(value: dict | None) -> object:
    """A stored value for people, without unpickling: JSON as itself, else type and repr."""
    if value is None:
        return None
    if value.get("format") == "json" and "data" in value:
        return value["data"]
    if value.get("repr") is not None:
        return f"<{value.get('type')}> {value['repr']}"
    return f"<{value.get('format')} value, {value.get('size')} bytes>"


@router.get("/projects/{project}/runs/{run}", response_class=HTMLResponse)
def run_page(project: ProjectDep, run: str, env: str | None = None) -> str:
    with project.engine.connect() as c:
        detail = queries.get_run(c, run.upper())
    rows = []
    for step in detail["steps"]:
        for execution in step["executions"]:
            state = execution["state"]
            value = execution["error"] or _shown(execution["value"])
            rows.append(
                f"<tr><td>{html.escape(execution['id'])}</td><td>{html.escape(step['target'])}</td>"
                f"<td style='color:{_STATE_COLOURS.get(state, '#000')}'>{state}</td>"
                f"<td><code>{html.escape(json.dumps(value)[:500])}</code></td></tr>"
            )
    title = f"Run {detail['id']} · {detail['workflow']}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width'></head>"
        "<body style='font-family:system-ui;margin:2rem'>"
        f"<h1>{html.escape(title)}</h1><p>Project {html.escape(project.name)}, environment "
        f"{html.escape(detail['environment'] or '')}, state <b>{detail['state']}</b></p>"
        "<table cellpadding='6'><tr><th>execution</th><th>target</th><th>state</th>"
        f"<th>result</th></tr>{''.join(rows)}</table></body></html>"
    )
