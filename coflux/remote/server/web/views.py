"""What the pages draw, computed from query results: graph layout, timeline, values.

Values are shown without unpickling (invariant I8): JSON as itself, anything
else as its type and repr, and references to executions and assets as links.
Long values and logs are cut, with a link to the whole.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

#: Longest value text shown inline; the rest is behind a link.
VALUE_LIMIT = 2000
#: Log lines shown on a run page; the rest is behind a link.
LOG_LIMIT = 500

NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP, MARGIN = 190, 46, 56, 14, 10

ACTIVE_STATES = ("queued", "assigned", "running")


def shown(value: dict[str, Any] | None, limit: int = VALUE_LIMIT) -> tuple[str, bool]:
    """A stored value as text for people, and whether it was cut."""
    if value is None:
        return "", False
    references = value.get("references") or []
    if value.get("format") == "json" and "data" in value:
        text = json.dumps(_with_references(value["data"], references), indent=2)
    elif value.get("format") == "json" and value.get("blob"):
        text = f"<JSON value, {value.get('size')} bytes, in blob {value['blob']}>"
    elif isinstance(value.get("preview"), dict):
        # A typed value (a DataFrame, a model, an array): its stored preview.
        from ....previews import block

        text = f"<{value.get('type') or value.get('format')}>\n{block(value['preview'])}"
    else:
        text = f"<{value.get('type') or value.get('format')}> {value.get('repr') or ''}".strip()
    if len(text) > limit:
        return text[:limit] + "…", True
    return text, False


def _with_references(data: Any, references: list[str]) -> Any:
    if isinstance(data, list):
        return [_with_references(item, references) for item in data]
    if isinstance(data, dict):
        if len(data) == 1 and "$ref" in data and isinstance(data["$ref"], int):
            index = data["$ref"]
            ref = references[index] if index < len(references) else "?"
            return f"Asset({ref})" if ref.startswith("a:") else f"Execution({ref})"
        return {key: _with_references(item, references) for key, item in data.items()}
    return data


def step_state(step: dict[str, Any]) -> str:
    return step["executions"][-1]["state"] if step["executions"] else "queued"


def graph(run: dict[str, Any], dependencies: list[tuple[str, str]]) -> dict[str, Any]:
    """Steps laid out left to right by call depth; edges for calls, dashed for passed values."""
    steps = run["steps"]
    step_of = {e["id"]: s["id"] for s in steps for e in s["executions"]}
    depth: dict[str, int] = {}
    for step in steps:  # steps come in order: a caller before what it calls
        parent = step_of.get(step["parent"] or "")
        depth[step["id"]] = depth.get(parent, -1) + 1 if parent else 0
    rows: dict[int, int] = {}
    nodes = []
    for step in steps:
        column = depth[step["id"]]
        row = rows.get(column, 0)
        rows[column] = row + 1
        latest = step["executions"][-1] if step["executions"] else None
        nodes.append(
            {
                "id": step["id"],
                "number": step["id"].rsplit(":", 1)[1],
                "target": step["target"],
                "state": step_state(step),
                "reused": bool(latest and latest["reused_from"]),
                "attempts": len(step["executions"]),
                "x": MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
                "y": MARGIN + row * (NODE_HEIGHT + ROW_GAP),
            }
        )
    at = {n["id"]: n for n in nodes}
    edges = []
    for step in steps:
        parent = step_of.get(step["parent"] or "")
        if parent in at:
            edges.append(_edge(at[parent], at[step["id"]], dashed=False))
    seen = set()
    callers = {s["id"]: step_of.get(s["parent"] or "") for s in steps}
    for execution, dependency in dependencies:
        source, target = step_of.get(dependency), step_of.get(execution)
        if callers.get(source) == target:
            continue  # a caller waiting for its own call: the call edge says it already
        if source in at and target in at and source != target and (source, target) not in seen:
            seen.add((source, target))
            edges.append(_edge(at[source], at[target], dashed=True))
    width = MARGIN * 2 + (max(depth.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP)
    height = MARGIN * 2 + max(rows.values(), default=1) * (NODE_HEIGHT + ROW_GAP)
    return {"nodes": nodes, "edges": edges, "width": width, "height": height}


def _edge(source: dict[str, Any], target: dict[str, Any], dashed: bool) -> dict[str, Any]:
    x1, y1 = source["x"] + NODE_WIDTH, source["y"] + NODE_HEIGHT / 2
    x2, y2 = target["x"], target["y"] + NODE_HEIGHT / 2
    if x2 <= x1:  # a value passed backwards or sideways: curve around below
        x1, x2 = source["x"] + NODE_WIDTH / 2, target["x"] + NODE_WIDTH / 2
        y1, y2 = source["y"] + NODE_HEIGHT, target["y"] + NODE_HEIGHT
        middle = max(y1, y2) + ROW_GAP * 2
        path = f"M{x1},{y1} C{x1},{middle} {x2},{middle} {x2},{y2}"
    else:
        bend = (x2 - x1) / 2
        path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    return {"path": path, "dashed": dashed}


def _time(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def timeline(run: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """A bar per execution: where it starts and how long it lasts, as % of the run."""
    executions = [(s, e) for s in run["steps"] for e in s["executions"]]
    if not executions:
        return []
    starts = [_time(e["created_at"]) or now for _, e in executions]
    ends = [_time(e["finished_at"]) or now for _, e in executions]
    first, last = min(starts), max(max(ends), min(starts) + 0.001)
    span = last - first
    bars = []
    for (step, execution), start, end in zip(executions, starts, ends, strict=True):
        bars.append(
            {
                "id": execution["id"],
                "target": step["target"],
                "state": execution["state"],
                "left": round((start - first) / span * 100, 2),
                "width": max(round((end - start) / span * 100, 2), 0.5),
                "seconds": round(end - start, 3),
            }
        )
    return bars


def is_active(run: dict[str, Any]) -> bool:
    return any(e["state"] in ACTIVE_STATES for s in run["steps"] for e in s["executions"])


def log_line(entry: dict[str, Any]) -> str:
    """A log message with its template filled in (values as stored, never unpickled)."""
    template = entry["template"] or ""
    values = entry["values"] or {}
    try:
        return template.format(**{k: _plain(v) for k, v in values.items()})
    except (KeyError, IndexError, ValueError, AttributeError):
        return template + (" " + json.dumps(values) if values else "")


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and "$type" in value:
        return value.get("repr")
    return value
