"""A run's steps drawn as a graph and a timeline, sized for runs of thousands of steps.

Graph: steps left to right by call depth, each child on or below its caller's
row; solid edges are calls, dashed edges are executions passed as arguments
(data flow). Siblings calling the same target more than ``GROUP_MIN`` times
collapse into one group node (a fan-out of 1,000 is one node saying how many
succeeded and failed) that the page can expand (``?expand=g12``); whatever
they call is inside the group too.

Timeline: a row per execution the view shows, named by its task, with its wait
(created → started) drawn apart from its run (started → finished), on one
scale from the first execution's creation to the last one's end. The page
gets each row's times and the busy intervals too, so a live update moves the
bars in the browser (``static/app.js``, the same scale) without the server
reading every execution again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from ..orchestration.live import GROUP_MIN, group_state

NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP, MARGIN = 200, 46, 56, 14, 10
#: An idle gap in the timeline longer than this (and a quarter of the busy time) is cut.
GAP_MIN = 5.0
#: How wide a cut gap is drawn, in % of the timeline.
GAP_WIDTH = 4.0
#: Nodes drawn (groups count as one); past this the graph says how many it left out.
NODE_LIMIT = 600
#: Timeline rows drawn; a longer run says how many more there are.
TIMELINE_ROWS = 200


def _number(step_id: str) -> int:
    return int(step_id.rsplit(":", 1)[1])


def _state(step: dict[str, Any]) -> str:
    return step["executions"][-1]["state"] if step["executions"] else "queued"


def layout(run: dict[str, Any], dependencies: list[tuple[str, str]], expand: set[str]) -> dict:
    steps = run["steps"]
    step_of = {e["id"]: s["id"] for s in steps for e in s["executions"]}
    parent_of = {s["id"]: step_of.get(s["parent"] or "") for s in steps}
    # Groups: siblings with one target, keyed by their first step's number.
    siblings: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for s in steps:
        if parent_of[s["id"]] is not None:
            siblings[(parent_of[s["id"]], s["target"])].append(s["id"])
    home: dict[str, str] = {}  # step id → the node that stands for it
    groups: dict[str, dict[str, Any]] = {}
    target: str | None  # a group's target here, a dependency's step below
    for (_, target), members in siblings.items():
        if len(members) <= GROUP_MIN:
            continue
        key = f"g{_number(members[0])}"
        if key in expand:
            continue
        groups[members[0]] = {"key": key, "members": members, "target": target}
        for member in members:
            home[member] = members[0]
    by_id = {s["id"]: s for s in steps}
    for s in steps:  # callers before callees: a step inside a group's member is in the group
        parent = parent_of[s["id"]]
        if s["id"] not in home and parent is not None and parent in home:
            home[s["id"]] = home[parent]
    depth: dict[str, int] = {}
    row_of: dict[str, int] = {}
    next_row: dict[int, int] = defaultdict(int)
    nodes: list[dict[str, Any]] = []
    hidden = 0
    for s in steps:
        sid = s["id"]
        if home.get(sid, sid) != sid:
            continue
        if len(nodes) >= NODE_LIMIT:
            hidden += 1  # past what a page can draw readably: said, not drawn
            continue
        parent = parent_of[sid]
        parent = home.get(parent, parent) if parent else None
        column = depth[parent] + 1 if parent in depth else 0
        depth[sid] = column
        row = max(next_row[column], row_of.get(parent, 0) if parent else 0)
        next_row[column] = row + 1
        row_of[sid] = row
        latest = s["executions"][-1] if s["executions"] else None
        node = {
            "id": sid,
            "number": _number(sid),
            "target": s["target"],
            "state": _state(s),
            "reused": bool(latest and latest["reused_from"]),
            "attempts": len(s["executions"]),
            "x": MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
            "y": MARGIN + row * (NODE_HEIGHT + ROW_GAP),
            "group": None,
        }
        if sid in groups:
            group = groups[sid]
            counts = Counter(_state(by_id[m]) for m in group["members"])
            node["group"] = {
                "key": group["key"],
                "size": len(group["members"]),
                "counts": sorted(counts.items()),
                "label": ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
            }
            node["state"] = group_state(counts)
        nodes.append(node)
    at = {n["id"]: n for n in nodes}
    edges = []
    for n in nodes:
        parent = parent_of[n["id"]]
        parent = home.get(parent, parent) if parent else None
        if parent in at:
            edges.append(_edge(at[parent], n, dashed=False))
    seen: set[tuple[str, str]] = set()
    for execution, dependency in dependencies:
        source, target = step_of.get(dependency), step_of.get(execution)
        if source is None or target is None:
            continue
        if parent_of.get(source) == target:
            continue  # a caller waiting for its own call: the call edge says it already
        source, target = home.get(source, source), home.get(target, target)
        if source in at and target in at and source != target and (source, target) not in seen:
            seen.add((source, target))
            edges.append(_edge(at[source], at[target], dashed=True))
    width = MARGIN * 2 + (max(depth.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP)
    height = MARGIN * 2 + (max(row_of.values(), default=0) + 1) * (NODE_HEIGHT + ROW_GAP)
    expanded = sorted(expand)
    return {
        "nodes": nodes,
        "edges": edges,
        "width": width,
        "height": height,
        "hidden": hidden,
        "groups": len(groups),
        "expanded": expanded,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
    }


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


class _Scale:
    """Time to % of the timeline's width, one scale for the view, except that idle
    gaps longer than ``GAP_MIN`` seconds and a quarter of the busy time are drawn
    ``GAP_WIDTH`` % wide and labelled: a re-run hours after its run doesn't
    squash every other bar to a sliver."""

    def __init__(self, intervals: list[tuple[float, float]]) -> None:
        merged: list[list[float]] = []
        for start, end in sorted(intervals):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        #: The busy intervals, for a page that rescales its bars as the run moves.
        self.merged = [(round(start, 3), round(end, 3)) for start, end in merged]
        busy = sum(end - start for start, end in merged) or 0.001
        self.pieces: list[tuple[float, float, bool]] = []  # (start, end, compressed)
        for i, (start, end) in enumerate(merged):
            if i:
                gap = (merged[i - 1][1], start)
                long = gap[1] - gap[0] > max(GAP_MIN, busy / 4)
                self.pieces.append((gap[0], gap[1], long))
            self.pieces.append((start, end, False))
        long_gaps = sum(1 for p in self.pieces if p[2])
        real = sum(end - start for start, end, compressed in self.pieces if not compressed)
        real = max(real, 0.001)
        share = GAP_WIDTH * long_gaps
        self.unit = (100 - share) / real  # % per second outside compressed gaps
        self.breaks: list[dict[str, Any]] = []
        at = 0.0
        self.offsets = []
        for start, end, compressed in self.pieces:
            self.offsets.append(at)
            width = GAP_WIDTH if compressed else (end - start) * self.unit
            if compressed:
                self.breaks.append(
                    {"left": round(at, 3), "width": GAP_WIDTH, "seconds": round(end - start, 3)}
                )
            at += width
        self.first = merged[0][0] if merged else 0.0

    def __call__(self, t: float) -> float:
        for (start, end, compressed), offset in zip(self.pieces, self.offsets, strict=True):
            if t <= end:
                if compressed:
                    return offset + GAP_WIDTH * (t - start) / max(end - start, 0.001)
                return offset + max(t - start, 0) * self.unit
        return 100.0


def timeline(run: dict[str, Any], now: float) -> dict[str, Any]:
    """Rows of (wait, run) bars as % of the view's width, named by task."""
    executions = [(s, e) for s in run["steps"] for e in s["executions"]]
    if not executions:
        return {"rows": [], "more": 0, "span": 0, "breaks": [], "busy": [], "now": now}
    times = []
    for _, e in executions:
        created = _time(e["created_at"]) or now
        started = _time(e["started_at"])
        finished = _time(e["finished_at"])
        end = finished or now
        times.append(
            (created, started if started is not None else (end if finished else None), end)
        )
    first = min(t[0] for t in times)
    last = max(max(t[2] for t in times), first + 0.001)
    scale = _Scale([(created, max(end, created + 0.001)) for created, _, end in times])
    rows = []
    for (step, execution), (created, started, end) in list(zip(executions, times, strict=True))[
        :TIMELINE_ROWS
    ]:
        run_from = started if started is not None else end
        attempt = execution["id"].rsplit(":", 1)[1]
        x0, x1, x2 = scale(created), scale(run_from), scale(end)
        rows.append(
            {
                "id": execution["id"],
                "number": _number(step["id"]),
                "target": step["target"],
                # Numbered as the graph's nodes: ten calls of one task read apart.
                "label": f"{_number(step['id'])}. "
                + step["target"].rsplit(":", 1)[-1]
                + (f" (attempt {attempt})" if attempt != "1" else ""),
                "state": execution["state"],
                "wait_left": round(x0, 3),
                "wait_width": round(max(x1 - x0, 0), 3),
                "left": round(x1, 3),
                "width": max(round(x2 - x1, 3), 0.4),
                "waited": round(max(run_from - created, 0), 3),
                "seconds": round(max(end - run_from, 0), 3),
                # As times, for live updates: the page redraws the bars from them.
                "created": round(created, 3),
                "started": None if started is None else round(started, 3),
                "finished": None if execution["finished_at"] is None else round(end, 3),
            }
        )
    return {
        "rows": rows,
        "more": max(len(executions) - TIMELINE_ROWS, 0),
        "span": round(last - first, 3),
        "breaks": scale.breaks,
        "busy": scale.merged,
        "now": round(now, 3),
    }
