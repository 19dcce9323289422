"""The HTTP client's async side, for the agent: the same URLs (the project quoted),
the same headers and the same errors (``responses.error_of``) as ``Client``.

The agent moves blobs and records assets while its event loop serves the
WebSocket, so its requests are awaited; what they mean is ``Client``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import CofluxError, ServerUnreachable
from .responses import auth_headers, error_of


class AsyncClient:
    def __init__(
        self, server: str, project: str, timeout: float = 60.0, token: str | None = None
    ) -> None:
        #: Every address given (servers on one database); ``next_server`` moves on.
        self.servers = [s.strip().rstrip("/") for s in server.split(",") if s.strip()] or [""]
        self.server = self.servers[0]
        self.project = project
        self.headers = auth_headers(token)
        self._http = httpx.AsyncClient(
            base_url=self.server,
            timeout=timeout,
            headers=self.headers,
            verify=self.server.startswith("https://"),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def next_server(self) -> None:
        """Move to the next address (after a failed connection)."""
        if len(self.servers) > 1:
            self.server = self.servers[(self.servers.index(self.server) + 1) % len(self.servers)]
            self._http.base_url = httpx.URL(self.server)

    @property
    def _p(self) -> str:
        return f"/api/projects/{quote(self.project, safe='')}"

    def agent_url(self) -> str:
        """The project's agent WebSocket on the current server."""
        return self.server.replace("http", "ws", 1) + f"{self._p}/agent"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``path`` is under the project; a failure is the Coflux error it stands for."""
        try:
            response = await self._http.request(method, self._p + path, **kwargs)
        except httpx.TransportError as e:
            raise ServerUnreachable(
                f"can't reach the Coflux server at {self.server} ({type(e).__name__})"
            ) from None
        if response.status_code >= 400:
            raise error_of(response, path)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A streamed response; a failure is raised before its body is read."""
        try:
            async with self._http.stream(method, self._p + path, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_of(response, path)
                yield response
        except httpx.TransportError as e:
            raise ServerUnreachable(
                f"can't reach the Coflux server at {self.server} ({type(e).__name__})"
            ) from None

    # --- blobs and assets (see ``coflux.local.blob_transfers``) ---

    async def upload_plans(self, sizes: dict[str, int]) -> dict[str, Any]:
        body = {"blobs": [{"key": k, "size": n} for k, n in sizes.items()]}
        return await self.json("POST", "/blobs/uploads", json=body)

    async def complete_upload(self, key: str, upload_id: str, etags: list[str], size: int) -> None:
        body = {"key": key, "upload_id": upload_id, "etags": etags, "size": size}
        await self.request("POST", "/blobs/uploads/complete", json=body)

    async def put_blob(self, key: str, content: AsyncIterator[bytes]) -> None:
        await self.request("PUT", f"/blobs/{key}", content=content)

    async def put_batch(self, content: AsyncIterator[bytes]) -> None:
        await self.request("POST", "/blobs/batch", content=content)

    async def download_urls(self, keys: list[str]) -> dict[str, Any]:
        return await self.json("POST", "/blobs/downloads", json={"keys": keys})

    async def report_corrupt(self, keys: list[str]) -> None:
        """Tell the server these came corrupt from its store; failing to changes nothing."""
        with contextlib.suppress(CofluxError):
            await self.request("POST", "/blobs/verify", json={"keys": keys})

    def fetch_blobs(
        self, keys: list[str]
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        return self.stream("POST", "/blobs/fetch", json={"keys": keys})

    async def record_asset(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.json("POST", "/assets", json=body)
