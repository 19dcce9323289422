"""Responses sent by the plain-ASGI middlewares (``limits``, ``security``),
before any route runs, in the shape of every other error of the server."""

from __future__ import annotations

import json
from typing import Any


async def send_error(
    scope: Any,
    send: Any,
    status: int,
    code: str,
    detail: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """``{"detail", "code"}`` with ``status``; on a WebSocket handshake as its
    HTTP response where the server supports that, else as a policy close."""
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        prefix = "websocket.http.response"
    else:
        prefix = "http.response"
    body = json.dumps({"detail": detail, "code": code}).encode()
    all_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": f"{prefix}.start", "status": status, "headers": all_headers})
    await send({"type": f"{prefix}.body", "body": body})
