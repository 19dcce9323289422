"""Forwarding a project's requests to the server process that orchestrates it.

With several server processes on one PostgreSQL database, each project is
orchestrated by the process holding its lease (``lease``). Clients and agents
may talk to any process: this ASGI middleware passes a request for a project
this process doesn't orchestrate to the one that does, unchanged (HTTP
streamed both ways; an agent's WebSocket piped frame by frame), and returns
its answer. When the holder can't be reached, this process tries to take the
lease over and serves the request itself.

Only requests naming a project are forwarded (``/api/projects/NAME/...`` and
the pages under ``/projects/NAME``); with SQLite there is one process, and
this middleware passes everything straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import httpx
import websockets

log = logging.getLogger("coflux.server")

_PROJECT_PATH = re.compile(r"^/(?:api/)?projects/([^/]+)(?:/|$)")
#: Headers that describe one hop, not the request (RFC 9110 section 7.6.1).
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"trailer",
    b"host",
}
#: Not passed on either: this process's front door checked ``Origin`` against
#: the host the client used; the holder, reached by another name, would refuse
#: a page's form as cross-origin.
_CHECKED_HERE = {b"origin"}
#: Closing a client's WebSocket because the holder went away: "try again later".
SERVICE_RESTART = 1012


class Forwarder:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = _PROJECT_PATH.match(scope.get("path", "")) if scope["type"] != "lifespan" else None
        projects = getattr(scope["app"].state, "projects", None) if match else None
        if projects is None or projects.leases is None:
            await self.app(scope, receive, send)
            return
        project = match.group(1)  # type: ignore[union-attr]
        holder = await projects.holder(project)
        if holder is None or holder == projects.settings.advertised_url:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send, holder, projects, project)
        else:
            await self._websocket(scope, receive, send, holder, projects, project)

    async def _http(
        self, scope: Any, receive: Any, send: Any, holder: str, projects: Any, project: str
    ) -> None:
        if self._client is None:
            # No retries, no pool limits beyond httpx's: one hop on a private network.
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0))
        started = False

        async def body() -> Any:
            nonlocal started
            started = True
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        url = holder + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP | _CHECKED_HERE
        ]
        request = self._client.build_request(scope["method"], url, headers=headers, content=body())
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as e:
            log.warning("can't forward to %s (%s)", holder, e)
            if not started and await projects.holder(project, fresh=True) is None:
                # Taken over: the body is still unread, so this process serves it.
                await self.app(scope, receive, send)
                return
            await _unavailable(send, f"the server orchestrating {project} is unreachable")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _websocket(
        self, scope: Any, receive: Any, send: Any, holder: str, projects: Any, project: str
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        url = holder.replace("http", "ws", 1) + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        passed = {b"authorization", b"cookie"}
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.lower() in passed
        ]
        try:
            upstream = await websockets.connect(
                url,
                additional_headers=headers,
                max_size=None,
                ping_interval=None,
                compression=None,
            )
        except (OSError, websockets.WebSocketException) as e:
            log.warning("can't forward a WebSocket to %s (%s)", holder, e)
            if await projects.holder(project, fresh=True) is None:
                # Taken over: this process serves the connection itself.
                await self.app(scope, _replaying(first, receive), send)
                return
            await send({"type": "websocket.close", "code": SERVICE_RESTART})
            return
        await send({"type": "websocket.accept"})

        async def down() -> None:
            """From the holder to the client, then its close code."""
            with contextlib.suppress(websockets.ConnectionClosed):
                async for message in upstream:
                    key = "text" if isinstance(message, str) else "bytes"
                    await send({"type": "websocket.send", key: message})
            code = upstream.close_code
            if code in (None, 1005, 1006):
                code = SERVICE_RESTART
            reason = upstream.close_reason or ""
            await send({"type": "websocket.close", "code": code, "reason": reason})

        async def up() -> None:
            """From the client to the holder, until the client leaves."""
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                data = message.get("text")
                await upstream.send(data if data is not None else message.get("bytes", b""))

        tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()


def _replaying(first: dict[str, Any], receive: Any) -> Any:
    """``receive`` as if ``first`` had not been read from it yet."""
    pending = [first]

    async def replay() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replay


async def _unavailable(send: Any, detail: str) -> None:
    from .asgi import send_error

    await send_error({"type": "http"}, send, 503, "unavailable", detail)
