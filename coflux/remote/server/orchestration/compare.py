"""A run as two environments see it, step by step: what a branch changed.

Steps are matched by their place in the call tree (the root, then each call's
index within its caller), so a branch's re-run, whose calls are new steps,
lines up with the production steps it replaces. Each pair says whether the
branch saw the same execution, reused a result, or executed again (with the
code hash that changed), and whether the results differ, with the paths that do.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, select

from ..tables import T_STEP
from .queries import get_run

#: Differences listed per step; past this the step says how many more.
DIFF_LIMIT = 50


def compare(
    c: Connection, run_id: str, views: tuple[tuple[str, list[int]], tuple[str, list[int]]]
) -> dict[str, Any]:
    (name_a, view_a), (name_b, view_b) = views
    rows = {
        r.number: r
        for r in c.execute(
            select(T_STEP.c.number, T_STEP.c.call_index, T_STEP.c.code_hash).where(
                T_STEP.c.run_id == run_id
            )
        )
    }
    sides = [_by_place(get_run(c, run_id, view), rows) for view in (view_a, view_b)]
    places = list(dict.fromkeys([*sides[0], *sides[1]]))
    steps = []
    counts: dict[str, int] = {}
    for place in places:
        a, b = sides[0].get(place), sides[1].get(place)
        entry = _pair(a, b, rows)
        entry["place"] = ".".join(str(p) for p in place)
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        steps.append(entry)
    return {"run": run_id, "environments": [name_a, name_b], "summary": counts, "steps": steps}


def _by_place(run: dict[str, Any], rows: dict[int, Any]) -> dict[tuple[int, ...], dict]:
    step_of = {e["id"]: s for s in run["steps"] for e in s["executions"]}
    places: dict[str, tuple[int, ...]] = {}
    out = {}
    for s in run["steps"]:  # callers first
        number = int(s["id"].rsplit(":", 1)[1])
        caller = step_of.get(s["parent"] or "")
        if caller is None:
            place: tuple[int, ...] = (number,)
        else:
            place = places.get(caller["id"], (0,)) + (rows[number].call_index or 0,)
        places[s["id"]] = place
        out[place] = s
    return out


def _side(step: dict[str, Any] | None, rows: dict[int, Any]) -> dict[str, Any] | None:
    if step is None:
        return None
    latest = step["executions"][-1] if step["executions"] else None
    number = int(step["id"].rsplit(":", 1)[1])
    return {
        "step": step["id"],
        "execution": latest["id"] if latest else None,
        "environment": latest["environment"] if latest else None,
        "state": latest["state"] if latest else "queued",
        "reused_from": latest["reused_from"] if latest else None,
        "code_hash": rows[number].code_hash,
        "value": _plain(latest["value"]) if latest else None,
        "error": (latest["error"] or {}).get("message") if latest and latest["error"] else None,
    }


def _plain(value: dict[str, Any] | None) -> Any:
    if value is None:
        return None
    if value.get("format") == "json" and "data" in value:
        return value["data"]
    return {
        "$type": value.get("type") or value.get("format"),
        "repr": value.get("repr"),
        "blob": value.get("blob"),
    }


def _pair(a: dict | None, b: dict | None, rows: dict[int, Any]) -> dict[str, Any]:
    left, right = _side(a, rows), _side(b, rows)
    target = cast(dict, a or b)["target"]  # every place has a step on one side at least
    if left is None or right is None:
        status = "only_a" if right is None else "only_b"
        return {
            "target": target,
            "status": status,
            "a": left,
            "b": right,
            "differs": True,
            "diff": [],
        }
    if left["execution"] == right["execution"]:
        status = "same"
    elif right["reused_from"] is not None:
        status = "reused"
    elif left["code_hash"] != right["code_hash"]:
        status = "new_code"
    else:
        status = "executed"
    diff = differences(left["value"], right["value"])
    # A reused (cached) result is a success like the one it reused: not a difference.
    if _outcome(left["state"]) != _outcome(right["state"]) or left["error"] != right["error"]:
        diff.insert(0, {"path": "(state)", "a": left["state"], "b": right["state"]})
    return {
        "target": target,
        "status": status,
        "a": left,
        "b": right,
        "differs": bool(diff),
        "diff": diff[:DIFF_LIMIT],
        "more": max(len(diff) - DIFF_LIMIT, 0),
    }


def _outcome(state: str) -> str:
    return "succeeded" if state == "cached" else state


def differences(a: Any, b: Any, path: str = "") -> list[dict[str, Any]]:
    """Where two JSON values differ: ``[{"path": "[0].x", "a": 1, "b": 2}, ...]``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(dict.fromkeys([*a, *b])):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append({"path": sub, "a": a.get(key), "b": b.get(key)})
            else:
                out.extend(differences(a[key], b[key], sub))
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(a) or i >= len(b):
                out.append(
                    {
                        "path": sub,
                        "a": a[i] if i < len(a) else None,
                        "b": b[i] if i < len(b) else None,
                    }
                )
            else:
                out.extend(differences(a[i], b[i], sub))
        return out
    return [] if a == b else [{"path": path or "(value)", "a": a, "b": b}]
