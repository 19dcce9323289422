"""Runs as the CLI presents them: arguments in, the ``runs show --json`` document out.

Values are displayed, never unpickled (invariant I8): a JSON value appears as
itself, any other as ``{"$type", "repr"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..errors import BlobError, ServerError, ServerUnreachable
from ..records.references import StepRef
from ..records.values import Value, display
from ..remote.client import Client

#: How deeply a JSON argument may nest: far beyond any real argument, and well
#: within what the decoders on the way (here, the server, the agent) can recurse.
MAX_ARGUMENT_DEPTH = 100
#: When a wait first looks for why a step waits (seconds), and the most it waits
#: between looks after that (each look waits twice as long as the last, since a
#: look reads the whole run), until it has said why once.
FIRST_CHECK, LONGEST_CHECK = 1.0, 60.0


def parse_cli_argument(text: str) -> Any:
    """JSON where the text parses as JSON, the plain string otherwise."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        depth = MAX_ARGUMENT_DEPTH + 1
    except ValueError:
        return text
    else:
        depth = _depth(value)
    if depth > MAX_ARGUMENT_DEPTH:
        from ..errors import InvalidInput

        raise InvalidInput(
            f"a JSON argument nests deeper than {MAX_ARGUMENT_DEPTH} levels; "
            "flatten it, or pass a file name and read the file in the workflow"
        )
    return value


def _depth(value: Any) -> int:
    """How many lists and objects deep ``value`` is (iteratively: it may be deep)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, dict | list):
            continue
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                if level + 1 > MAX_ARGUMENT_DEPTH:
                    return level + 1
                stack.append((child, level + 1))
        deepest = max(deepest, level)
    return deepest


def encode_arguments(arguments: list[str]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Command-line arguments as serialised values, and the blobs of those too big to inline."""
    # Here, not above: the SDK's serialisation (and its execution context) is
    # for what runs and submits, not for showing runs.
    from ..serialization import serialize

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
    """A value for people and scripts; one whose blob can't be read is shown as
    unavailable (its hash and why), so the rest of the run still shows."""
    if value is None:
        return None
    try:
        return display(Value.from_dict(value), client.get_blob)
    except (BlobError, ServerError, ServerUnreachable) as e:
        return {
            "$type": "coflux.Unavailable",
            "repr": f"<unavailable: blob {value.get('blob')}: {e}>",
            "blob": value.get("blob"),
            "reason": str(e),
        }


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
                    # The commit of the code that ran it, and whether its tree was dirty.
                    "commit": e.get("commit"),
                    "dirty": e.get("dirty"),
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


def execution_state(
    client: Client, run_id: str, document: dict[str, Any], execution_id: str
) -> str | None:
    """An execution's state, from the document, or from the whole run when the view
    hides it (a re-run of a step the view's latest parent execution doesn't call)."""
    for steps in (document["steps"], None):
        if steps is None:
            steps = client.get_run(run_id, None)["steps"]
        for step in steps:
            for execution in step["executions"]:
                if execution["id"] == execution_id:
                    return execution["state"]
    return None


def wait_for_run(
    client: Client,
    run_id: str,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    interval: float = 0.25,
    step: int | None = None,
    view: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Wait until a run has finished (every step of it, or only ``step``); return
    the server's view of it.

    Without ``on_update`` this long-polls the server (one request, answered at
    the end); with it, the run is fetched every ``interval`` seconds to be drawn.
    From a second on (then after 2, 4, 8 ... seconds, at most a minute apart), ``notify`` is told,
    once, if a step waits for an agent that isn't there or can take no more
    (see :mod:`coflux.remote.waiting`).
    """
    told = notify is None  # once told why, not again
    gap = FIRST_CHECK
    next_check = time.monotonic() + gap
    while True:
        if on_update is None:
            # Short waits until told, to say soon why a step may wait for long
            # (a chain of nested calls fills its agent only as it grows).
            timeout = 30 if told else max(0.0, next_check - time.monotonic()) + 0.001
            waited = StepRef(run_id, step) if step is not None else run_id
            if client.wait_for_run(waited, timeout=timeout)["step_finished"]:
                return client.get_run(run_id, view)
            if not told and time.monotonic() >= next_check:
                told = _notify_waiting(client, client.get_run(run_id, view), notify)
                gap = min(gap * 2, LONGEST_CHECK)
                next_check = time.monotonic() + gap
            continue
        run = client.get_run(run_id, view)
        on_update(run)
        if run["state"] != "running":
            return run
        if not told and time.monotonic() >= next_check:
            told = _notify_waiting(client, run, notify)
            gap = min(gap * 2, LONGEST_CHECK)
            next_check = time.monotonic() + gap
        time.sleep(interval)


def _notify_waiting(
    client: Client, run: dict[str, Any], notify: Callable[[str], None] | None
) -> bool:
    from ..remote.waiting import waiting_notice

    notice = waiting_notice(run, client.list_agents())
    if notice is not None and notify is not None:
        notify(notice)
    return notice is not None
