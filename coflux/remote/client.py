"""The HTTP client: one method per endpoint; HTTP failures become Coflux errors here.

Runs and steps are named by typed references (a run ID, a ``StepRef``), parsed
where the user typed them; their URLs are built in one place (``_run_path``,
``_step_path``).

GETs to an ``http://`` server go through the standard library
(``plain_http``); httpx is imported and its client made only for the rest
(writes, streams, HTTPS): a read command never imports it (issue 25).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import (
    BlobError,
    CofluxError,
    NotFound,
    ServerUnreachable,
)
from ..records.references import StepRef
from . import plain_http
from .responses import auth_headers, error_of

if TYPE_CHECKING:
    import httpx


class Client:
    def __init__(
        self, server: str, project: str, timeout: float = 30.0, token: str | None = None
    ) -> None:
        #: Every address given (``http://a:7777,http://b:7777``: servers on one
        #: database); requests go to ``server``, the next one when it can't be reached.
        self.servers = [s.strip().rstrip("/") for s in server.split(",") if s.strip()] or [""]
        self.server = self.servers[0]
        self.project = project
        self._token = token
        self._timeout = timeout
        self._direct: httpx.Client | None = None
        self._httpx: httpx.Client | None = None
        self._plain = self._plain_for(self.server)

    def _plain_for(self, server: str) -> plain_http.PlainHttp | None:
        if not plain_http.handles(server):
            return None
        return plain_http.PlainHttp(server, self._timeout, auth_headers(self._token))

    @property
    def _http(self) -> httpx.Client:
        """The httpx client, made (and httpx imported) on first use."""
        if self._httpx is None:
            import httpx

            self._httpx = httpx.Client(
                base_url=self.server,
                timeout=self._timeout,
                headers=auth_headers(self._token),
                # Loading the CA bundle costs 40 ms of every command; plain HTTP never uses it.
                verify=self.server.startswith("https://"),
            )
        return self._httpx

    def close(self) -> None:
        if self._plain is not None:
            self._plain.close()
        if self._httpx is not None:
            self._httpx.close()
        if self._direct is not None:
            self._direct.close()

    @property
    def addresses(self) -> str:
        """Every address, the one in use first (for an agent started from here)."""
        return ",".join([self.server, *(s for s in self.servers if s != self.server)])

    def _next_server(self) -> bool:
        """Move to the next address; False when there is only one."""
        if len(self.servers) < 2:
            return False
        self.server = self.servers[(self.servers.index(self.server) + 1) % len(self.servers)]
        if self._plain is not None:
            self._plain.close()
        self._plain = self._plain_for(self.server)
        if self._httpx is not None:
            import httpx

            self._httpx.base_url = httpx.URL(self.server)
        return True

    @property
    def direct(self) -> httpx.Client:
        """For presigned URLs of the blob store: never the project's token."""
        if self._direct is None:
            import httpx

            self._direct = httpx.Client(timeout=self._timeout)
        return self._direct

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _p(self) -> str:
        return f"/api/projects/{quote(self.project, safe='')}"

    def _run_path(self, run: str | StepRef) -> str:
        """``.../runs/RUN``: the run's path, or the path of the run a step is in."""
        run_id = run.run_id if isinstance(run, StepRef) else run
        return f"{self._p}/runs/{quote(run_id, safe='')}"

    def _step_path(self, step: StepRef) -> str:
        return f"{self._run_path(step)}/steps/{step.number}"

    def _request(
        self, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | plain_http.Response:
        tried = 1
        while True:
            try:
                response = self._send(method, path, **kwargs)
                break
            except _NotSent as e:
                # Never sent, so safe to send to another server of the same database.
                if tried < len(self.servers) and self._next_server():
                    tried += 1
                    continue
                raise self._unreachable(e.cause) from None
            except _Failed as e:
                raise self._unreachable(e.cause) from None
        if response.status_code >= 400:
            raise error_of(response, path)
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response | plain_http.Response:
        """One request, by the standard library when it can (a GET to an ``http://``
        server); a failure on the way is raised as ``_NotSent`` or ``_Failed``."""
        if self._plain is not None and method == "GET" and kwargs.keys() <= {"params", "timeout"}:
            try:
                return self._plain.get(path, **kwargs)
            except plain_http.NotSent as e:
                raise _NotSent(e) from None
            except plain_http.TransportError as e:
                raise _Failed(e) from None
        import httpx

        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise _NotSent(e) from None
        except httpx.TransportError as e:
            raise _Failed(e) from None

    def _unreachable(self, e: Exception) -> ServerUnreachable:
        return ServerUnreachable(
            f"can't reach the Coflux server at {self.server} ({type(e).__name__}); "
            "start one with `coflux server`, or point --server / COFLUX_SERVER at it"
        )

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

    def register(
        self,
        environment: str,
        repository: str,
        targets: list[dict[str, Any]],
        provenance: dict[str, Any] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "environment": environment,
            "repository": repository,
            "targets": targets,
        }
        if provenance is not None:
            body["provenance"] = provenance
        self._json("POST", f"{self._p}/manifests", json=body)

    def list_manifests(self, environment: str) -> list[dict[str, Any]]:
        """What each repository serves in ``environment``, with its commit and dirtiness."""
        return self._json("GET", f"{self._p}/manifests", params={"environment": environment})

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
        return self._json("GET", self._run_path(run_id), params=params)

    def wait_for_run(self, run: str | StepRef, timeout: float = 30) -> dict[str, Any]:
        """Long poll until the run (every step of it), or only the step, has finished
        or ``timeout`` passes; return the run's summary."""
        params: dict[str, Any] = {"timeout": timeout}
        if isinstance(run, StepRef):
            params["step"] = run.number
        path = f"{self._run_path(run)}/wait"
        return self._json("GET", path, params=params, timeout=timeout + 30)

    def get_logs(
        self, run: str | StepRef, after: int = 0, **filters: str | None
    ) -> list[dict[str, Any]]:
        """A page of log messages of a run or one step; ``filters``: ``level``,
        ``grep``, ``since`` (see the API)."""
        params: dict[str, Any] = {"after": after}
        if isinstance(run, StepRef):
            params["step"] = run.number
        params.update({k: v for k, v in filters.items() if v})
        return self._json("GET", f"{self._run_path(run)}/logs", params=params)

    def get_diff(self, run_id: str, a: str, b: str) -> dict[str, Any]:
        """A run as environment ``b`` sees it against ``a`` (``coflux runs diff``)."""
        path = f"{self._run_path(run_id)}/diff"
        return self._json("GET", path, params=[("env", a), ("env", b)])

    def rerun(
        self,
        step: StepRef,
        environment: str,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, str]:
        """Re-run a step; the answer's ``execution_id`` is the new execution's
        reference (``RUN:N:A``)."""
        body = {"environment": environment, "force": force, "idempotency_key": idempotency_key}
        return self._json("POST", f"{self._step_path(step)}/rerun", json=body)

    def export_run(self, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"{self._run_path(run_id)}/export")

    def import_run(self, facts: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"{self._p}/runs/import", json=facts)

    def cancel(
        self,
        target: str | StepRef,
        idempotency_key: str | None = None,
        before: float | None = None,
    ) -> dict[str, Any]:
        """Cancel a run or a step; with ``before``, only executions made by then."""
        body: dict[str, Any] = {"step": target.number if isinstance(target, StepRef) else None}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if before is not None:
            body["before"] = before
        return self._json("POST", f"{self._run_path(target)}/cancel", json=body)

    # --- blobs ---

    def missing_blobs(self, keys: list[str]) -> list[str]:
        return self._json("POST", f"{self._p}/blobs/missing", json={"keys": keys})["missing"]

    def put_blob(self, key: str, data: bytes) -> None:
        """Store a blob: directly in the server's object store when it presigns."""
        plan = self.upload_plans([(key, len(data))])
        if not plan["missing"]:
            return
        if not plan["direct"]:
            self._request("PUT", f"{self._p}/blobs/{key}", content=data)
            return
        upload = plan["uploads"][0]
        from . import transfers

        etags = transfers.put_blob(self.direct, upload, lambda o, n: data[o : o + n], len(data))
        if etags:
            self.complete_upload(key, upload["upload_id"], etags, len(data))

    def upload_from_store(self, store: Any, keys: list[str]) -> list[str]:
        """Upload those of ``keys`` (all in the machine's ``store``) the server lacks:
        directly to its object store when it presigns (as agents do), else through
        it. Return the keys that were sent."""
        from . import transfers

        sizes = {k: store.size(k) for k in dict.fromkeys(keys)}
        sent: list[str] = []
        items = list(sizes.items())
        for start in range(0, len(items), 10_000):  # the route's limit per request
            plan = self.upload_plans(items[start : start + 10_000])
            if not plan["direct"]:
                for key in plan["missing"]:
                    self.upload_blob(key, store.open_chunks(key))
            for upload in plan["uploads"]:
                key = upload["key"]
                read = transfers.read_range(store, key, sizes[key])
                etags = transfers.put_blob(self.direct, upload, read, sizes[key])
                if etags:
                    self.complete_upload(key, upload["upload_id"], etags, sizes[key])
                if etags is not None:  # None: the store had it already
                    sent.append(key)
            if not plan["direct"]:
                sent.extend(plan["missing"])
        return sent

    def get_blob(self, key: str) -> bytes:
        import httpx

        from ..cache.keys import hash_bytes

        try:
            urls = self.download_urls([key])
            if urls["direct"]:
                if key not in urls["urls"]:
                    raise NotFound(key)
                response = self.direct.get(urls["urls"][key])
                if response.status_code == 404:
                    raise NotFound(key)
                if response.status_code >= 300:
                    raise ServerUnreachable(
                        f"the blob store failed reading blob {key} (HTTP {response.status_code})"
                    )
                data = response.content
                if hash_bytes(data) != key:
                    self.report_corrupt([key])
                    raise BlobError(f"blob {key} is corrupt: its content does not match its name")
                return data
            return self._request("GET", f"{self._p}/blobs/{key}").content
        except NotFound:
            raise BlobError(f"blob {key} is not on the server") from None
        except httpx.TransportError as e:
            raise ServerUnreachable(f"the blob store can't be reached ({e})") from None

    def upload_plans(self, blobs: list[tuple[str, int]]) -> dict[str, Any]:
        """Which of these (key, size) the server lacks and, when its store
        presigns, how to upload each directly (see ``coflux.remote.transfers``)."""
        body = {"blobs": [{"key": k, "size": n} for k, n in blobs]}
        return self._json("POST", f"{self._p}/blobs/uploads", json=body)

    def complete_upload(self, key: str, upload_id: str, etags: list[str], size: int) -> None:
        body = {"key": key, "upload_id": upload_id, "etags": etags, "size": size}
        self._json("POST", f"{self._p}/blobs/uploads/complete", json=body)

    def report_corrupt(self, keys: list[str]) -> None:
        """Tell the server these blobs came corrupt from its store (it checks them
        and moves bad ones aside); a failure to tell it changes nothing here."""
        with contextlib.suppress(CofluxError):
            self._json("POST", f"{self._p}/blobs/verify", json={"keys": keys})

    def download_urls(self, keys: list[str]) -> dict[str, Any]:
        return self._json("POST", f"{self._p}/blobs/downloads", json={"keys": keys})

    def upload_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        """Upload a blob streamed from ``chunks`` (the server verifies it against ``key``)."""
        self._request("PUT", f"{self._p}/blobs/{key}", content=chunks)

    def fetch_blobs(self, keys: list[str], feed: Callable[[bytes], None]) -> None:
        """Stream many blobs as one batch of frames (``coflux.cache.frames``) into ``feed``."""
        import httpx

        path = f"{self._p}/blobs/fetch"
        try:
            with self._http.stream("POST", path, json={"keys": keys}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response, path)
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

    def run_assets(self, run_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"{self._run_path(run_id)}/assets")

    def agent_url(self) -> str:
        return self.server.replace("http", "ws", 1) + f"{self._p}/agent"


class _Failed(Exception):
    """A request that failed on the way (``cause``: the transport's exception)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(cause)
        self.cause = cause


class _NotSent(_Failed):
    """A request that never reached the server."""
