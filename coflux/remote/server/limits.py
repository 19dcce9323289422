"""Bounded requests (invariant I9), as plain ASGI middleware.

Headers may take ``MAX_HEADERS`` bytes (431 beyond); URLs hold no NUL (400). JSON requests may carry
``max_body`` bytes; blobs, run imports and asset records (bulk transfers)
``max_blob``. A declared ``Content-Length`` over the limit is refused before
any byte is read; a chunked body is counted as it arrives and refused (413)
the moment it crosses the limit. Plain ASGI rather than
``@app.middleware("http")``: that wrapper re-streams every request body
through extra tasks and queues, which made uploads several times slower.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import send_error

BULK_SUFFIXES = ("/runs/import", "/assets")
#: Bytes of request headers accepted (names and values together).
MAX_HEADERS = 32 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body: int, max_blob: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_blob = max_blob

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADERS:
            await send_error(scope, send, 431, "too_large", "request headers too large")
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # No name or filter holds NUL, and PostgreSQL can't even compare one.
            await send_error(scope, send, 400, "invalid", "NUL characters are not allowed in URLs")
            return
        path: str = scope["path"]
        bulk = "/blobs/" in path or path.endswith(BULK_SUFFIXES)
        limit = self.max_blob if bulk else self.max_body
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(scope, send, 400, "invalid", "invalid Content-Length")
                return
            if int(declared) > limit:
                detail = f"request body over {limit} bytes"
                await send_error(scope, send, 413, "too_large", detail)
                return
        received = 0
        refused = False

        async def limited() -> Any:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer 413 here: a route reading the body would turn any
                    # exception from it into its own 400. The app is told the
                    # client left, and whatever it answers is dropped.
                    if not refused:
                        refused = True
                        detail = f"request body over {limit} bytes"
                        await send_error(scope, send, 413, "too_large", detail)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Any) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, unless_refused)
        except Exception:
            if not refused:
                raise


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
