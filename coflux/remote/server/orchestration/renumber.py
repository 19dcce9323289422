"""Numbering an imported run's facts apart from what the server already has of it.

Two workspaces can each extend one run while offline (a copy of a folder, a
run both pulled): each makes its own re-run ``RUN:1:2`` and its own steps
``RUN:3``, ``RUN:4``. Both are kept as what they are. A step or execution of
the import that *is* one the server has (the same creation time, and for a
step the same target: facts never change once recorded) keeps that number;
one whose number the server has given to something else gets the next free
number, and every reference to it inside the facts (parents, reuse, values
passed on, dependencies, logs, assets) follows. Pushing the same facts again
numbers them the same way, so an import stays idempotent.
"""

from __future__ import annotations

from typing import Any


def renumber(
    facts: dict[str, Any],
    steps: dict[int, tuple[float, str]],
    executions: dict[tuple[int, int], float],
    busy: dict[int, set[int]],
    top_step: int,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``facts`` (a ``RunExport`` as a dict) renumbered against the server's run.

    ``steps`` is the server's steps of the run (number: creation time, target),
    ``executions`` its executions ((step, attempt): creation time), ``busy`` the
    attempts of live executions by step number (perhaps not stored yet) and
    ``top_step`` the highest step number handed out. Returns the facts and what
    was renamed (old reference: new).
    """
    run_id = facts["run"]["id"]
    step_of_identity = {identity: number for number, identity in steps.items()}
    highest = max([top_step, *steps, *(s["number"] for s in facts["steps"])], default=0)
    step_map: dict[int, int] = {}
    for step in sorted(facts["steps"], key=lambda s: s["number"]):
        number = step["number"]
        identity = (step["created_at"], step["target"])
        if identity in step_of_identity:
            step_map[number] = step_of_identity[identity]
        elif number not in steps and number not in busy:
            step_map[number] = number
        else:
            highest += 1
            step_map[number] = highest

    attempt_of_identity = {(n, created): a for (n, a), created in executions.items()}
    taken: dict[int, set[int]] = {}
    for n, a in executions:
        taken.setdefault(n, set()).add(a)
    for n, attempts in busy.items():
        taken.setdefault(n, set()).update(attempts)
    renamed: dict[str, str] = {}
    placed: list[tuple[dict[str, Any], int, int]] = []
    for e in sorted(facts["executions"], key=lambda e: (e["step"], e["attempt"])):
        number = step_map.get(e["step"], e["step"])
        found = attempt_of_identity.get((number, e["created_at"]))
        if found is not None:
            attempt = found
        elif e["attempt"] not in taken.get(number, set()):
            attempt = e["attempt"]
        else:
            attempt = -1  # numbered below, above everything this import keeps
        placed.append((e, number, attempt))
        if attempt > 0:
            taken.setdefault(number, set()).add(attempt)
    for i, (e, number, attempt) in enumerate(placed):
        if attempt < 0:
            attempt = max(taken.get(number, {0})) + 1
            taken.setdefault(number, set()).add(attempt)
            placed[i] = (e, number, attempt)
    for e, number, attempt in placed:
        old, new = f"{run_id}:{e['step']}:{e['attempt']}", f"{run_id}:{number}:{attempt}"
        if old != new:
            renamed[old] = new
    if not renamed and all(k == v for k, v in step_map.items()):
        return facts, {}

    def ref(value: str | None) -> str | None:
        return renamed.get(value, value) if value is not None else None

    def values(item: Any) -> Any:
        """Serialised values name the executions they carry in ``references``."""
        if isinstance(item, dict):
            out = {k: values(v) for k, v in item.items()}
            if isinstance(item.get("references"), list):
                out["references"] = [
                    ref(r) if isinstance(r, str) else r for r in item["references"]
                ]
            return out
        if isinstance(item, list):
            return [values(v) for v in item]
        return item

    out = values(facts)
    out["steps"] = [
        {**values(s), "number": step_map[s["number"]], "parent": ref(s["parent"])}
        for s in facts["steps"]
    ]
    out["executions"] = []
    for e, number, attempt in placed:
        moved = {**values(e), "step": number, "attempt": attempt}
        if e.get("result") is not None:
            moved["result"] = {**moved["result"], "reused_from": ref(e["result"]["reused_from"])}
        out["executions"].append(moved)
    out["dependencies"] = [
        {"execution": ref(d["execution"]), "dependency": ref(d["dependency"])}
        for d in facts["dependencies"]
    ]
    out["logs"] = [{**values(x), "execution": ref(x["execution"])} for x in facts["logs"]]
    out["assets"] = [{**a, "execution": ref(a["execution"])} for a in facts["assets"]]
    renamed.update(
        {f"{run_id}:{old}": f"{run_id}:{new}" for old, new in step_map.items() if old != new}
    )
    return out, renamed
