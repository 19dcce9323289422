"""What an agent sends instead of a message too large for its connection.

The server closes an agent's connection on a message over its limit (1009),
and the agent sends every unanswered request again when it reconnects: one
such message used to wedge the agent for as long as it ran. So each message
is measured as it is sent, and one over the limit never leaves. What it said
goes in a smaller form where there is one (log messages and an error outcome,
cut with a marker); a result that can't be cut fails its execution, and any
other request is answered with an error saying why, which fails the
execution that made it unless the task handles it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ..errors import CofluxError
from ..execution.truncate import fit_error, fit_log

log = logging.getLogger("coflux.agent")

Pending = dict[int, tuple[dict[str, Any], "asyncio.Future[Any]"]]


def encode(message: dict[str, Any], limit: int, pending: Pending) -> str | None:
    """``message`` as JSON to send; one over ``limit`` is replaced by a smaller
    one (also in ``pending``, so a reconnect re-sends that), or its request in
    ``pending`` fails: None, nothing to send."""
    text = json.dumps(message)
    if len(text) <= limit:
        return text
    smaller = replacement(message, len(text), limit)
    entry = pending.pop(message["id"], None) if "id" in message else None
    if isinstance(smaller, dict):
        text = json.dumps(smaller)
        if len(text) <= limit:
            if entry is not None:
                pending[message["id"]] = (smaller, entry[1])
            return text
        smaller = CofluxError(f"a {message.get('method')} message too large to send")
    log.warning("not sent: %s", smaller)
    if entry is not None and not entry[1].done():
        entry[1].set_exception(smaller)
    return None


def replacement(message: dict[str, Any], size: int, limit: int) -> dict[str, Any] | CofluxError:
    """A message with the same id and effect that fits ``limit`` bytes, or the
    error to answer the request with."""
    method, params = message.get("method"), dict(message.get("params") or {})
    over = f"is {size} bytes as a message, over the server's limit of {limit} bytes"
    if method == "put_logs":
        messages = params.get("messages") or []
        share = max(1024, limit // 2 // max(1, len(messages)))
        params["messages"] = [_fit_log_message(m, share) for m in messages]
    elif method == "put_result" and params.get("error") is not None:
        params["error"] = fit_error(params["error"], limit // 2)
    elif method == "put_result":
        error = f"the result of {params.get('execution_id')} {over}"
        params = {
            "execution_id": params.get("execution_id"),
            "error": {"type": "coflux.ExecutionError", "message": error, "traceback": ""},
        }
    elif method == "schedule":
        target = (params.get("target") or {}).get("name")
        return CofluxError(f"the call of {target} {over}")
    else:
        return CofluxError(f"the {method} request {over}")
    return {**message, "params": params}


def _fit_log_message(message: dict[str, Any], budget: int) -> dict[str, Any]:
    template, values = fit_log(message.get("template"), message.get("values") or {}, budget)
    return {**message, "template": template, "values": values}
