"""Drawing runs for people: a tree of steps with states, timings and results."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.text import Text
from rich.tree import Tree

STATE_STYLES = {
    "succeeded": "green",
    "cached": "green",
    "failed": "red",
    "abandoned": "red",
    "cancelled": "bright_black",
    "queued": "yellow",
    "assigned": "blue",
    "running": "blue",
}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    if isinstance(value, dict) and set(value) >= {"$type", "repr"}:
        text = f"<{value['$type']}> {value['repr']}"
        if isinstance(value.get("preview"), dict):
            from ..records.previews import summary

            text = f"<{value['$type']}> {summary(value['preview'])}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolved(document: dict[str, Any]) -> str:
    """The run's result for people: a workflow that returned an execution of its
    run (a reference to its result) shows that execution's result, and where from."""
    result = document["result"]
    if isinstance(result, dict) and result.get("$type") == "coflux.Execution":
        for step in document["steps"]:
            for execution in step["executions"]:
                if execution["id"] == result["id"] and execution["state"] in (
                    "succeeded",
                    "cached",
                ):
                    return f"{short(execution['result'], 2000)}  (from {result['id']})"
    return short(result, 2000)


def duration(execution: dict[str, Any]) -> str:
    start, end = execution.get("started_at"), execution.get("finished_at")
    if not start or not end:
        return ""
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def run_tree(document: dict[str, Any]) -> Tree:
    """The run as a tree: each step under the execution that called it."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for step in document["steps"]:
        children.setdefault(step["parent"], []).append(step)
    view = document.get("view") or document.get("environment")
    header = Text.assemble(
        (f"Run {document['id']}", "bold"),
        f"  {document['workflow']}  ",
        state_text(document["state"]),
        (f"  (as seen from {view})", "dim") if view else "",
    )
    tree = Tree(header)

    def add(node: Tree, step: dict[str, Any]) -> None:
        for execution in step["executions"]:
            line = Text.assemble(
                (execution["id"], "cyan"), f"  {step['target']}  ", state_text(execution["state"])
            )
            if execution.get("environment") not in (None, view):
                line.append(f"  [{execution['environment']}]", style="magenta")
            if execution.get("reused_from"):
                line.append(f"  reused from {execution['reused_from']}", style="yellow")
            if execution["state"] in ("succeeded", "cached"):
                line.append(f"  {duration(execution)}  → {short(execution['result'])}", style="dim")
            elif execution["error"]:
                error = execution["error"]
                line.append(f"  {error['type']}: {error['message']}"[:160], style="red")
            branch = node.add(line)
            for child in children.get(execution["id"], []):
                add(branch, child)

    # A spawned run's initial step names the execution (of another run) that
    # called it: it is a root here too, marked with where it came from.
    own = {e["id"] for step in document["steps"] for e in step["executions"]}
    for parent, steps in children.items():
        if parent is None or parent not in own:
            for root in steps:
                node = tree if parent is None else tree.add(Text(f"spawned by {parent}", "dim"))
                add(node, root)
    return tree
