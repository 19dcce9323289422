"""What a run page shows: its steps (graph, timeline), the selected step's values,
executions and assets, and its log with filters, computed from the queries.

The same context draws the whole page, its live body and the log panel alone
(``_logs.html``), so a filter or a live update replaces only what changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

from fastapi import Depends, Query

from ....assets import decode, parse_reference
from ....errors import BlobError
from ...waiting import waiting_notice
from ..blobstores import StoreUnavailable, blobs_of
from ..orchestration import assets as asset_queries
from ..orchestration import browse, live, queries
from ..orchestration.compare import compare
from ..orchestration.project import ProjectOrchestrator
from ..rawjson import RawJSON
from . import graph as graphs
from . import views
from .values import Links, arguments, render


@dataclass(frozen=True)
class LogFilters:
    level: str | None = None
    step: int | None = None
    grep: str | None = None
    since: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.level or self.step or self.grep or self.since)

    def query(self) -> str:
        pairs = {"level": self.level, "log_step": self.step, "grep": self.grep, "since": self.since}
        return urlencode({k: v for k, v in pairs.items() if v})


async def log_filters(  # async: checking text needs no thread of the pool (one hop less)
    level: str = Query("", max_length=20),
    log_step: int | None = Query(None, ge=1),
    grep: str = Query("", max_length=200),
    since: str = Query("", max_length=40),
) -> LogFilters:
    browse.check_level(level)
    browse.parse_since(since)  # refused here, as a 400, rather than deep in a query
    return LogFilters(level or None, log_step, grep or None, since or None)


LogFiltersDep = Annotated[LogFilters, Depends(log_filters)]


def environment_list(project: ProjectOrchestrator) -> list[dict[str, Any]]:
    """The environment tree, flattened depth first, each with its depth and base."""
    described = project.list_environments()
    children: dict[str | None, list[str]] = {}
    for e in described:
        children.setdefault(e["base"], []).append(e["name"])
    out: list[dict[str, Any]] = []

    def walk(base: str | None, depth: int) -> None:
        for name in sorted(children.get(base, [])):
            out.append({"name": name, "depth": depth, "base": base})
            walk(name, depth + 1)

    walk(None, 0)
    return out


def connected_environments(project: ProjectOrchestrator) -> dict[str, list[str]]:
    """Each environment with a connected agent, and the repositories they host."""
    out: dict[str, set[str]] = {}
    for agent in project.list_agents():
        if agent["connected"] and agent["environment"]:
            out.setdefault(agent["environment"], set()).update(agent["repositories"])
    return {name: sorted(repos) for name, repos in out.items()}


def parameters_of(project: ProjectOrchestrator, c: Any, env: str) -> dict[str, list[dict]]:
    """``repository:target`` → its parameters, as ``env`` (or its bases) registered them."""
    try:
        lineage = project._ancestry(project.environment_id(env, archived=True))
    except Exception:  # an environment renamed since: parameters are a nicety
        return {}
    return {
        f"{repository}:{t['name']}": t.get("parameters") or []
        for repository, found in queries.visible_targets(c, lineage).items()
        for t in found
    }


def log_page(
    c: Any,
    run_id: str,
    filters: LogFilters,
    limit: int = views.LOG_LIMIT,
    shown: set[tuple[int, int]] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Log lines that pass the filters, failures (with tracebacks) among them where
    they happened; and whether there are more than ``limit``. ``shown``: the
    executions the page's view shows, (step number, attempt): seen from
    production, a branch's re-run's lines are the branch's, and seen from the
    branch, the lines of production's executions it replaced are not its."""
    since = browse.parse_since(filters.since)
    lines = browse.filtered_logs(
        c,
        run_id,
        views.log_line,
        step=filters.step,
        level=filters.level,
        grep=filters.grep,
        since=since,
        limit=limit + 1,
        shown=shown,
    )
    cut = len(lines) > limit
    lines = lines[:limit]
    needle = filters.grep.casefold() if filters.grep else None
    failed = [
        f
        for f in browse.failures(c, run_id, filters.step, shown)
        if (since is None or f["at"] >= since)
        and (needle is None or needle in (f["text"] + (f["traceback"] or "")).casefold())
    ]
    if failed:
        # Where each failure happened among the lines (ISO times in UTC sort as text).
        merged = sorted(lines + failed, key=lambda e: (e["timestamp"] or "", e["id"] is None))
        if cut and lines:
            last = lines[-1]["timestamp"] or ""
            merged = [e for e in merged if e["id"] is not None or (e["timestamp"] or "") <= last]
        lines = merged
    return lines, cut


def run_context(
    project: ProjectOrchestrator,
    run_id: str,
    env: str | None,
    step: int,
    filters: LogFilters,
    expand: str = "",
) -> dict[str, Any]:
    """What a run's page shows; ``run_id`` as its path's dependency parsed it."""
    view = project.view_of(run_id, env, strict=False) if env else None
    # What the page shows is as of now; live updates ask for what moved after
    # (less a second, so a change committed while this reads is seen then).
    read_at = time.time() - 1.0
    with project.engine.connect() as c:
        # Values stay as their stored text (decoding every step's was most of the
        # page's time); the chosen step's are decoded below.
        detail = queries.get_run(c, run_id, view, raw=True)
        dependencies = browse.run_dependencies(c, run_id)
        chosen = detail["steps"][min(step, len(detail["steps"])) - 1] if detail["steps"] else None
        shown_env = detail["view"] or detail["environment"]
        parameters = parameters_of(project, c, shown_env)
        shown = (
            {
                (int(s["id"].rsplit(":", 1)[1]), int(e["id"].rsplit(":", 1)[1]))
                for s in detail["steps"]
                for e in s["executions"]
            }
            if view is not None
            else None
        )
        logs, logs_cut = log_page(c, run_id, filters, shown=shown)
        run_assets = asset_queries.run_assets(c, run_id)
        known = live.execution_count(c, run_id, set(view) if view is not None else None)
        against = _against(project, c, run_id, detail, view)
    # A step number in the URL is the step's own number, not its position in the view.
    if detail["steps"]:
        by_number = {int(s["id"].rsplit(":", 1)[1]): s for s in detail["steps"]}
        chosen = _decoded(by_number.get(step, detail["steps"][0]))
    links = Links(project.name, shown_env)
    base = f"/projects/{quote(project.name)}/runs/{quote(run_id)}"
    connected = connected_environments(project)
    return {
        "project": project.name,
        "env": shown_env,
        "environments": environment_list(project),
        "run": detail,
        "duration": _duration(detail),
        "active": views.is_active(detail),
        "graph": graphs.layout(detail, dependencies, set(filter(None, expand.split(",")))),
        "expand": expand,
        "timeline": graphs.timeline(detail, time.time()),
        "gap_min": graphs.GAP_MIN,
        "gap_width": graphs.GAP_WIDTH,
        "selected": _selected(project, chosen, run_assets, parameters, links, base),
        "steps": [
            {"number": int(s["id"].rsplit(":", 1)[1]), "target": s["target"]}
            for s in detail["steps"][:201]
        ],
        "logs": logs,
        "logs_cut": logs_cut,
        "filters": filters,
        "levels": list(browse.LEVELS),
        "connected": connected,
        "base_url": base,
        "read_at": read_at,
        "known": known,
        "against": against,
        "waiting": waiting_notice(detail, project.list_agents())
        if views.is_active(detail)
        else None,
    }


#: Runs up to this many steps show, seen from a branch, how they differ from the
#: run's own environment on the page itself (larger ones: the compare page).
COMPARE_STEPS = 1000


def _against(
    project: ProjectOrchestrator, c: Any, run_id: str, detail: dict[str, Any], view: Any
) -> dict[str, Any] | None:
    """Seen from another environment than the run's: what that one changed, in short."""
    if view is None or detail["view"] == detail["environment"]:
        return None
    if len(detail["steps"]) > COMPARE_STEPS:
        return {"base": detail["environment"], "summary": None, "marks": {}}
    base = detail["environment"]
    views = ((base, project.view_of(run_id, base, False)), (detail["view"], list(view)))
    result = compare(c, run_id, views)
    marks = {
        s["b"]["step"]: s["status"].replace("_", " ")
        + (" · result differs" if s["differs"] and s["a"] else "")
        for s in result["steps"]
        if s["b"] and s["status"] != "same"
    }
    differ = sum(1 for s in result["steps"] if s["differs"] and s["a"] and s["b"])
    return {"base": base, "summary": result["summary"], "differ": differ, "marks": marks}


def _decoded(step: dict[str, Any]) -> dict[str, Any]:
    """A step of a raw ``get_run`` with its arguments, values and errors decoded."""
    return {
        **step,
        "arguments": _load(step["arguments"]) or [],
        "executions": [
            {**e, "value": _load(e["value"]), "error": _load(e["error"])}
            for e in step["executions"]
        ],
    }


def _load(raw: Any) -> Any:
    return json.loads(raw.text) if isinstance(raw, RawJSON) else raw


def _duration(detail: dict[str, Any]) -> float | None:
    first = (
        detail["steps"][0]["executions"][-1]
        if detail["steps"] and detail["steps"][0]["executions"]
        else None
    )
    if not first or not first["finished_at"]:
        return None
    # Both are set: finished_at was checked above, and every run has created_at.
    finished = cast(float, views._time(first["finished_at"]))
    return round(finished - cast(float, views._time(detail["created_at"])), 3)


def _selected(
    project: ProjectOrchestrator,
    step: dict[str, Any] | None,
    run_assets: list[dict[str, Any]],
    parameters: dict[str, list[dict]],
    links: Links,
    base: str,
) -> dict[str, Any]:
    if step is None:
        return {
            "id": "",
            "number": 1,
            "target": "",
            "arguments": [],
            "executions": [],
            "assets": [],
        }
    number = int(step["id"].rsplit(":", 1)[1])
    value_url = f"{base}/steps/{number}/value"
    executions = []
    for execution in step["executions"]:
        attempt = int(execution["id"].rsplit(":", 1)[1])
        executions.append(
            {
                **execution,
                "attempt": attempt,
                "result_html": render(execution["value"], links, f"{value_url}?attempt={attempt}")
                if execution["value"] is not None
                else None,
                "seconds": _seconds(execution),
            }
        )
    mine = {e["id"] for e in step["executions"]}
    return {
        "id": step["id"],
        "number": number,
        "target": step["target"],
        "type": step.get("type"),
        "arguments": arguments(
            step.get("arguments") or [], parameters.get(step["target"]), links, value_url
        ),
        "known_parameters": step["target"] in parameters,
        "executions": executions,
        "assets": [
            {**asset, **asset_entries(project, asset["ref"], 50)}
            for asset in run_assets
            if asset["execution"] in mine
        ],
    }


def _seconds(execution: dict[str, Any]) -> float | None:
    start = views._time(execution["started_at"] or execution["created_at"])
    end = views._time(execution["finished_at"])
    return round(end - start, 3) if start is not None and end is not None else None


def asset_entries(project: ProjectOrchestrator, ref: str, limit: int) -> dict[str, Any]:
    """An asset's first files, or why they can't be listed (the page says so
    rather than showing an empty list)."""
    store = blobs_of(project.settings, project.name)
    try:
        entries = decode(store.get_bytes(parse_reference(ref)))
    except (BlobError, StoreUnavailable) as e:
        return {"entries": [], "unavailable": str(e)}
    return {"entries": [e.to_dict() for e in entries][:limit], "unavailable": None}
