"""Runs as the CLI presents them: arguments in, the ``runs show --json`` document out.

Values are displayed, never unpickled (invariant I8): a JSON value appears as
itself, any other as ``{"$type", "repr"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..models import Value
from ..remote.client import Client
from ..serialization import display, serialize


def parse_cli_argument(text: str) -> Any:
    """JSON where the text parses as JSON, the plain string otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def encode_arguments(arguments: list[str]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Command-line arguments as serialised values, and the blobs of those too big to inline."""
    blobs: dict[str, bytes] = {}

    def put_blob(data: bytes) -> str:
        from ..cache import hash_bytes

        key = hash_bytes(data)
        blobs[key] = data
        return key

    return [serialize(parse_cli_argument(a), put_blob).to_dict() for a in arguments], blobs


def serialize_arguments(client: Client, arguments: list[str]) -> list[dict[str, Any]]:
    """Serialised arguments, their blobs uploaded to the server."""
    values, blobs = encode_arguments(arguments)
    if blobs:
        for key in client.missing_blobs(list(blobs)):
            client.put_blob(key, blobs[key])
    return values


def show_value(client: Client, value: dict[str, Any] | None) -> Any:
    if value is None:
        return None
    return display(Value.from_dict(value), client.get_blob)


def run_document(client: Client, run: dict[str, Any]) -> dict[str, Any]:
    """The public ``runs show --json`` shape of a run as the server returns it."""
    steps = []
    for step in run["steps"]:
        executions = []
        for e in step["executions"]:
            executions.append(
                {
                    "id": e["id"],
                    "environment": e["environment"],
                    "state": e["state"],
                    "result": show_value(client, e["value"]),
                    "error": e["error"],
                    "reused_from": e["reused_from"],
                    "created_at": e["created_at"],
                    "started_at": e["started_at"],
                    "finished_at": e["finished_at"],
                }
            )
        latest = executions[-1] if executions else None
        steps.append(
            {
                "id": step["id"],
                "target": step["target"],
                "parent": step["parent"],
                # The step as this view sees it: its latest execution's state, and
                # where that execution's result came from when it was reused.
                "state": latest["state"] if latest else "queued",
                "reused_from": latest["reused_from"] if latest else None,
                "executions": executions,
            }
        )
    initial = steps[0]["executions"][-1] if steps and steps[0]["executions"] else None
    return {
        "id": run["id"],
        "url": run["url"],
        "project": run["project"],
        "environment": run["environment"],
        "view": run.get("view") or run["environment"],
        "workflow": run["workflow"],
        "state": run["state"],
        "result": initial["result"] if initial else None,
        "steps": steps,
    }


def wait_for_run(
    client: Client,
    run_id: str,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    interval: float = 0.25,
    step: int = 1,
    view: str | None = None,
    settle: bool = False,
    on_pending: Callable[[list[str]], None] | None = None,
) -> dict[str, Any]:
    """Wait until a run has finished; return the server's view of it.

    Without ``on_update`` this long-polls the server (one request, answered at
    the end); with it, the run is fetched every ``interval`` seconds to be drawn.
    A run whose workflow returned an execution (a reference to its result) is
    waited for until that execution has finished too; with ``settle``, until
    every execution of the run has (``coflux run``, whose agent stops after:
    a task submitted and never waited for must not be abandoned).
    ``on_pending`` is told which steps are still waited for, each time.
    """
    while True:
        if on_update is None:
            if client.wait_for_run(run_id, timeout=30, step=step)["step_finished"]:
                run = client.get_run(run_id, view)
                break
            continue
        run = client.get_run(run_id, view)
        on_update(run)
        if run["state"] != "running":
            break
        time.sleep(interval)
    if step != 1:
        return run
    while pending := _pending_steps(run, settle):
        if on_pending is not None:
            on_pending([f"{run_id}:{n}" for n in pending])
        for number in pending:
            while not client.wait_for_run(run_id, timeout=30, step=number)["step_finished"]:
                pass
        run = client.get_run(run_id, view)
        if on_update is not None:
            on_update(run)
    return run


_ACTIVE = ("queued", "assigned", "running", "suspended")


def _pending_steps(run: dict[str, Any], settle: bool) -> list[int]:
    """Steps of the run still to finish: those the result refers to, or with
    ``settle`` every one."""
    steps = run.get("steps") or []
    if not steps or not steps[0]["executions"]:
        return []
    wanted: set[str] | None = None
    if not settle:
        value = steps[0]["executions"][-1].get("value") or {}
        wanted = {r.rpartition(":")[0] for r in value.get("references") or ()}
    pending = []
    for step in steps:
        if wanted is not None and step["id"] not in wanted:
            continue
        if step["executions"] and step["executions"][-1]["state"] in _ACTIVE:
            pending.append(int(step["id"].rpartition(":")[2]))
    return pending
