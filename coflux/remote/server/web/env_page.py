"""What an environment's page shows: its runs (filtered, paged, with durations),
the re-runs made in it, its base, its workflows as launch forms, the commit each
repository's code was registered from, and its agents with what they run now,
warning when none is connected.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from ....errors import InvalidInput
from ..orchestration import browse, progress, queries
from ..orchestration.project import ProjectOrchestrator
from .launch import fields
from .run_page import connected_environments, environment_list

PAGE_SIZE = 50


def _day(text: str, name: str, end: bool = False) -> float | None:
    """``2026-01-31`` (a UTC day; ``end``: the moment after it) as a timestamp."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"{name} {text[:20]!r} is not a date like 2026-01-31") from None
    return day.timestamp() + (86400 if end else 0)


def _cursor(text: str) -> tuple[float, str] | None:
    if not text:
        return None
    at, _, run_id = text.partition("_")
    try:
        return float(at), run_id
    except ValueError:
        raise InvalidInput(
            f"page cursor {text[:40]!r} is malformed; start from the first page"
        ) from None


def running_now(project: ProjectOrchestrator) -> dict[str, list[dict[str, str]]]:
    """Each agent session's executions that are running now."""
    out: dict[str, list[dict[str, str]]] = {}
    for _ in range(3):  # the orchestrator may change the dict meanwhile: read again
        try:
            live = list(project.live.values())
            break
        except RuntimeError:
            continue
    else:
        return out
    for e in live:
        if e.session_id:
            ref = f"{e.step.run_id}:{e.step.number}:{e.attempt}"
            out.setdefault(e.session_id, []).append(
                {
                    "ref": ref,
                    "run": e.step.run_id,
                    "step": str(e.step.number),
                    "target": f"{e.step.repository}:{e.step.target}",
                }
            )
    return out


def environment_context(
    project: ProjectOrchestrator, env: str, filters: dict[str, str]
) -> dict[str, Any]:
    environments = environment_list(project)
    environment_id = project.environment_id(env, archived=True)
    lineage = project._ancestry(environment_id)
    since, until = _day(filters["since"], "from"), _day(filters["until"], "to", end=True)
    with project.engine.connect() as c:
        runs, cursor = browse.page_of_runs(
            c,
            environment_id,
            workflow=filters["workflow"] or None,
            state=filters["state"] or None,
            search=filters["q"] or None,
            since=since,
            until=until,
            before=_cursor(filters["before"]),
            limit=PAGE_SIZE,
            live=progress.live_runs(project, environment_id),
        )
        reruns = browse.reruns_in(c, environment_id, limit=20)
        targets = queries.visible_targets(c, lineage)
        registrations = queries.registrations(c, lineage)
    for r in registrations:
        r["environment"] = project.environment_names[r.pop("environment_id")]
    connected = connected_environments(project)
    hosted = set(connected.get(env, []))
    workflows = [
        {
            **t,
            "repository": repository,
            "fields": fields(t.get("parameters") or []),
            "served": repository in hosted,
        }
        for repository, found in targets.items()
        for t in found
        if t["type"] == "workflow"
    ]
    here = next((e for e in environments if e["name"] == env), {"base": None})
    kept = {k: v for k, v in filters.items() if v and k != "before"}
    next_page = None
    if cursor is not None:
        next_page = "?" + urlencode({"env": env, **kept, "before": f"{cursor[0]!r}_{cursor[1]}"})
    agents = [a for a in project.list_agents() if a["environment"] == env]
    now = running_now(project)
    for a in agents:
        a["now"] = now.get(a["session_id"], [])[:10]
    return {
        "project": project.name,
        "env": env,
        "base": here.get("base"),
        "environments": environments,
        "runs": runs,
        "next_page": next_page,
        "first_page": "?" + urlencode({"env": env, **kept}) if filters["before"] else None,
        "filters": filters,
        "workflow_names": sorted(
            f"{r}:{t['name']}" for r, ts in targets.items() for t in ts if t["type"] == "workflow"
        ),
        "workflows": workflows,
        "registrations": registrations,
        "reruns": reruns,
        "agents": agents,
        "connected": env in connected,
        "tree": tree(project.name, environments, env),
    }


def tree(project: str, environments: list[dict[str, Any]], current: str) -> str:
    """Nested lists of links for the environment tree (depth first, as listed):
    a branch's list inside its base's item, as HTML (and screen readers) want it."""
    parts = ["<ul>"]
    for i, e in enumerate(environments):
        name = html.escape(e["name"])
        css = ' class="current" aria-current="page"' if e["name"] == current else ""
        url = f"/projects/{html.escape(project)}?env={quote(e['name'], safe='/')}"
        parts.append(f'<li><a href="{url}"{css}>{name}</a>')
        after = environments[i + 1]["depth"] if i + 1 < len(environments) else 0
        if after > e["depth"]:
            parts.append("<ul>")
        else:
            parts.append("</li>" + "</ul></li>" * (e["depth"] - after))
    parts.append("</ul>")
    return "".join(parts)
