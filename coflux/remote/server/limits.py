"""Bounded request bodies (invariant I9), as plain ASGI middleware.

JSON requests may carry ``max_body`` bytes; blobs, run imports and asset
records (bulk transfers) ``max_blob``. A declared ``Content-Length`` over the
limit is refused before any byte is read; a chunked body is counted as it
arrives and refused the moment it crosses the limit. Plain ASGI rather than
``@app.middleware("http")``: that wrapper re-streams every request body
through extra tasks and queues, which made uploads several times slower.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ...errors import InvalidInput

BULK_SUFFIXES = ("/runs/import", "/assets")


class BodyTooLarge(InvalidInput):
    status_code = 413
    code = "too_large"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body: int, max_blob: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_blob = max_blob

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        bulk = "/blobs/" in path or path.endswith(BULK_SUFFIXES)
        limit = self.max_blob if bulk else self.max_body
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(scope, receive, send, 400, "invalid Content-Length", "invalid")
                return
            if int(declared) > limit:
                detail = f"request body over {limit} bytes"
                await _refuse(scope, receive, send, 413, detail, "too_large")
                return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"request body over {limit} bytes")
            return message

        await self.app(scope, limited, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, code: str
) -> None:
    response = JSONResponse({"detail": detail, "code": code}, status_code=status)
    await response(scope, receive, send)
