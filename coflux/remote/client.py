"""The HTTP client: one method per endpoint; HTTP failures become Coflux errors here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import (
    BlobError,
    CofluxError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServerError,
    ServerUnreachable,
    StorageFull,
    Unauthorized,
)

_ERRORS_BY_STATUS: dict[int, type[CofluxError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
    422: InvalidInput,
    507: StorageFull,
}


def auth_headers(token: str | None) -> dict[str, str]:
    """The header that carries a token (never the URL, which ends up in logs)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class Client:
    def __init__(
        self, server: str, project: str, timeout: float = 30.0, token: str | None = None
    ) -> None:
        self.server = server.rstrip("/")
        self.project = project
        self._http = httpx.Client(
            base_url=self.server,
            timeout=timeout,
            headers=auth_headers(token),
            # Loading the CA bundle costs 40 ms of every command; plain HTTP never uses it.
            verify=self.server.startswith("https://"),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _p(self) -> str:
        return f"/api/projects/{quote(self.project, safe='')}"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        if response.status_code >= 400:
            self._raise_for(response, path)
        return response

    def _unreachable(self, e: Exception) -> ServerUnreachable:
        return ServerUnreachable(
            f"can't reach the Coflux server at {self.server} ({type(e).__name__}); "
            "start one with `coflux server`, or point --server / COFLUX_SERVER at it"
        )

    @staticmethod
    def _raise_for(response: httpx.Response, path: str) -> None:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        message = str(detail or f"HTTP {response.status_code} from {path}")
        if response.status_code == 401:
            message = (
                "the server needs a valid token: set COFLUX_TOKEN (or `token` in "
                ".coflux.toml) to one made with `coflux tokens create`"
            )
        error = _ERRORS_BY_STATUS.get(response.status_code)
        if error is None:
            raise ServerError(f"the server failed: {message}")
        raise error(message)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- server and projects ---

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/api/health")

    def list_projects(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/projects")

    def create_project(self, name: str) -> dict[str, Any]:
        return self._json("POST", "/api/projects", json={"name": name})

    # --- environments and manifests ---

    def list_environments(self) -> list[dict[str, Any]]:
        return self._json("GET", f"{self._p}/environments")

    def create_environment(self, name: str, base: str | None = None) -> dict[str, Any]:
        return self._json("POST", f"{self._p}/environments", json={"name": name, "base": base})

    def update_environment(
        self,
        name: str,
        base: str | None = None,
        no_base: bool = False,
        new_name: str | None = None,
    ) -> dict[str, Any]:
        body = {"name": name, "base": base, "no_base": no_base, "new_name": new_name}
        return self._json("PATCH", f"{self._p}/environments", json=body)

    def archive_environment(self, name: str) -> dict[str, Any]:
        return self._json("POST", f"{self._p}/environments/archive", json={"name": name})

    def register(self, environment: str, repository: str, targets: list[dict[str, Any]]) -> None:
        self._json(
            "POST",
            f"{self._p}/manifests",
            json={"environment": environment, "repository": repository, "targets": targets},
        )

    def get_target(self, environment: str, repository: str, target: str) -> dict[str, Any]:
        return self._json(
            "GET",
            f"{self._p}/targets/{quote(repository, safe='')}/{quote(target, safe='')}",
            params={"environment": environment},
        )

    def list_agents(self) -> list[dict[str, Any]]:
        return self._json("GET", f"{self._p}/agents")

    # --- runs ---

    def submit(
        self,
        environment: str,
        repository: str,
        target: str,
        arguments: list[dict[str, Any]],
        idempotency_key: str | None = None,
    ) -> dict[str, str]:
        """Start a run. The submission carries an idempotency key (made here when not
        given), so re-sending it after a dropped connection never makes a second run."""
        body = {
            "environment": environment,
            "repository": repository,
            "target": target,
            "arguments": arguments,
            "idempotency_key": idempotency_key or uuid.uuid4().hex,
        }
        for attempt in range(3):
            try:
                return self._json("POST", f"{self._p}/runs", json=body)
            except ServerUnreachable:
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def list_runs(self, environment: str, limit: int = 100) -> list[dict[str, Any]]:
        return self._json(
            "GET", f"{self._p}/runs", params={"environment": environment, "limit": limit}
        )

    def get_run(
        self, run_id: str, environment: str | None = None, strict: bool = False
    ) -> dict[str, Any]:
        """A run with its steps; with ``environment``, that environment's view of it
        (``strict``: refuse an environment the run isn't visible from, rather than
        falling back to the run's own)."""
        params: dict[str, Any] = {}
        if environment is not None:
            params = {"environment": environment, "strict": strict}
        return self._json("GET", f"{self._p}/runs/{quote(run_id, safe='')}", params=params)

    def wait_for_run(
        self, run_id: str, timeout: float = 30, step: int | None = None
    ) -> dict[str, Any]:
        """Long poll until the run (every step of it, or only ``step``) has finished
        or ``timeout`` passes; return the run's summary."""
        params: dict[str, Any] = {"timeout": timeout}
        if step is not None:
            params["step"] = step
        return self._json(
            "GET",
            f"{self._p}/runs/{quote(run_id, safe='')}/wait",
            params=params,
            timeout=timeout + 30,
        )

    def get_logs(
        self, run_id: str, step: int | None = None, after: int = 0
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"after": after}
        if step is not None:
            params["step"] = step
        return self._json("GET", f"{self._p}/runs/{quote(run_id, safe='')}/logs", params=params)

    def rerun(
        self,
        run_id: str,
        step: int,
        environment: str,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, str]:
        body = {"environment": environment, "force": force, "idempotency_key": idempotency_key}
        return self._json(
            "POST", f"{self._p}/runs/{quote(run_id, safe='')}/steps/{step}/rerun", json=body
        )

    def export_run(self, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"{self._p}/runs/{quote(run_id, safe='')}/export")

    def import_run(self, facts: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"{self._p}/runs/import", json=facts)

    def cancel(self, run_id: str, step: int | None = None) -> dict[str, Any]:
        return self._json(
            "POST", f"{self._p}/runs/{quote(run_id, safe='')}/cancel", json={"step": step}
        )

    # --- blobs ---

    def missing_blobs(self, keys: list[str]) -> list[str]:
        return self._json("POST", f"{self._p}/blobs/missing", json={"keys": keys})["missing"]

    def put_blob(self, key: str, data: bytes) -> None:
        self._request("PUT", f"{self._p}/blobs/{key}", content=data)

    def get_blob(self, key: str) -> bytes:
        try:
            return self._request("GET", f"{self._p}/blobs/{key}").content
        except NotFound:
            raise BlobError(f"blob {key} is not on the server") from None

    def upload_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        """Upload a blob streamed from ``chunks`` (the server verifies it against ``key``)."""
        self._request("PUT", f"{self._p}/blobs/{key}", content=chunks)

    def fetch_blobs(self, keys: list[str], feed: Callable[[bytes], None]) -> None:
        """Stream many blobs as one batch of frames (``coflux.cache.frames``) into ``feed``."""
        path = f"{self._p}/blobs/fetch"
        try:
            with self._http.stream("POST", path, json={"keys": keys}) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response, path)
                for chunk in response.iter_bytes(1024 * 1024):
                    feed(chunk)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None

    # --- assets ---

    def record_asset(
        self, path: str, entries: list[dict[str, Any]], execution: str | None = None
    ) -> dict[str, Any]:
        body = {"path": path, "entries": entries, "execution": execution}
        return self._json("POST", f"{self._p}/assets", json=body)

    def get_asset(self, ref: str) -> dict[str, Any]:
        return self._json("GET", f"{self._p}/assets/{quote(ref, safe='')}")

    def run_assets(self, run: str) -> list[dict[str, Any]]:
        return self._json("GET", f"{self._p}/runs/{quote(run, safe='')}/assets")

    def agent_url(self) -> str:
        return self.server.replace("http", "ws", 1) + f"{self._p}/agent"
