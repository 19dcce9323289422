"""The agent: connects out to the server, hosts repositories, executes what it is assigned.

The agent keeps one WebSocket to the server and a pool of execution
processes. Requests it sends (results, logs, calls to other targets) stay
pending until the server answers; when the connection drops, the agent
reconnects with backoff under the same session and sends them again, so
nothing it already had is lost (the server recognises repeats).

Here: the agent's life cycle, its connection and session (hello,
heartbeats, reconnects with backoff, the fence of invariant I2) and stopping
(draining). Requests over the connection are ``agent_requests``, handing
executions to workers and relaying what they say ``agent_dispatch``. Log
shipping under back-pressure is ``agent_logs``, blobs and assets
``agent_assets`` (moved by ``blob_transfers``), the local index's buffer
``agent_index``; messages are typed in ``coflux.remote.agent_protocol`` and
frames in ``coflux.execution.framing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import websockets

from ..cache import BlobStore
from ..errors import CofluxError
from ..execution.loader import manifests
from ..records.connection import RECONNECTABLE_CLOSE_CODES
from ..records.placement import Tags
from ..remote import agent_protocol as protocol
from ..remote.async_client import AsyncClient
from .activity import ExecutionLines
from .agent_assets import AgentAssets
from .agent_dispatch import Dispatch
from .agent_index import IndexBuffer
from .agent_logs import FRAME_BYTES, LogShipper
from .agent_requests import Requests, send_text
from .follow import HeadMoved
from .provenance import provenance
from .workers import WorkerPool

log = logging.getLogger("coflux.agent")


T = TypeVar("T")


def _refused(code: int) -> bool:
    """Whether the server closed the connection for good (see ``models``)."""
    return 4000 <= code < 4500 and code not in RECONNECTABLE_CLOSE_CODES


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


class Agent:
    def __init__(
        self,
        server: str,
        project: str,
        environment: str,
        modules: list[str],
        concurrency: int,
        store_root: Path,
        session_id: str | None = None,
        token: str | None = None,
        provides: Tags | None = None,
    ) -> None:
        #: Every address given (servers on one database): on a failed connection
        #: the agent moves to the next.
        self.servers = [s.strip().rstrip("/") for s in server.split(",") if s.strip()]
        self.server = self.servers[0]
        self.project = project
        self.environment = environment
        self.modules = modules
        self.concurrency = concurrency
        #: Placement tags: the server gives this agent only executions whose
        #: target's ``requires`` these satisfy.
        self.provides = dict(provides or {})
        self.session_id = session_id or uuid.uuid4().hex
        self.store = BlobStore(store_root)
        #: The workspace's ``.coflux`` folder, which holds the store (and the local index).
        self.data_dir = Path(store_root).parent
        self.index = IndexBuffer(self.data_dir, environment, self._spawn)
        self.pool = WorkerPool(modules, store_root, spares=1)
        #: Seconds between heartbeats: as the server says in its welcome (see
        #: ``_session``), so that a short ``--agent-timeout`` gets quick ones.
        self.heartbeat_interval = 5.0
        #: The longest wait between reconnects (see ``_longest_backoff``).
        self.reconnect_cap = _env_float("COFLUX_RECONNECT_CAP", 5.0)
        #: Longest a graceful stop waits for running executions (seconds).
        self.drain_timeout = _env_float("COFLUX_DRAIN_TIMEOUT", 60.0)
        self._draining: asyncio.Future[None] | None = None
        self.manifests: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self.requests = Requests(self._spawn)
        #: Blob transfers and asset records, and the WebSocket's URL and headers.
        self._http = AsyncClient(server, project, timeout=60, token=token)
        self.assets = AgentAssets(self._http, self.store, self.index)
        #: The line printed for each execution as it ends.
        self.executions = ExecutionLines()
        self.logs = LogShipper(self._fire)
        self.dispatch = Dispatch(
            self.pool,
            self.requests,
            self.assets,
            self.logs,
            self.executions,
            self._spawn,
            self._tasks,
        )
        self._stopping = False
        self.on_connected: Any = None  # optional callback, e.g. for `coflux run`
        self.may_register: Callable[[], bool] = lambda: True  # `coflux dev` checks HEAD
        #: The git commit (and dirtiness) of the code served, and of the code last registered.
        self.provenance: dict[str, Any] | None = None
        self._registered: dict[str, Any] | None = None
        #: When the server was last heard from (monotonic), and after how much
        #: silence this agent kills its running tasks (0.75 x the server's timeout).
        self._last_contact = time.monotonic()
        self._fence_after: float | None = None

    # --- life cycle ------------------------------------------------------------

    def load(self) -> None:
        """Import the repositories here too, to report their manifests."""
        self.manifests = manifests(self.modules)

    async def reload(self) -> list[str]:
        """Serve the code as it is on disk now (``coflux dev``); return the targets
        that are new or whose code changed, as ``repository:target``.

        Raises ``RepositoryError`` (and keeps serving the code it has) when the
        new code fails to import. Changed manifests are registered before this
        returns, so a re-run made next is judged against the new code hashes.
        """
        fresh, self.provenance = await asyncio.gather(
            self.pool.reload(), asyncio.to_thread(provenance, Path.cwd())
        )
        changed = [
            f"{repository}:{target['name']}"
            for repository, targets in fresh.items()
            for target in targets
            if target not in self.manifests.get(repository, [])
        ]
        if not self.may_register():
            raise HeadMoved()  # `coflux dev`: the code on disk is another branch's now
        previous, self.manifests = self.manifests, fresh
        moved, self._registered = self._registered != self.provenance, self.provenance
        for repository, targets in fresh.items():
            if (moved or targets != previous.get(repository)) and self.requests.connected.is_set():
                register = self.request(
                    "register",
                    {"repository": repository, "targets": targets, "provenance": self.provenance},
                )
                await asyncio.wait_for(register, timeout=30)
        return changed

    async def run(self) -> None:
        if not self.manifests:
            self.load()
        # Read while the first processes start (git status takes tens of milliseconds).
        commit = asyncio.ensure_future(asyncio.to_thread(provenance, Path.cwd()))
        self.store.clean_temp()
        await self.pool.start(min(self.concurrency, 2))
        self.provenance = self._registered = await commit
        # The rest of the pool starts while the agent connects: a first burst of
        # work finds its processes ready (measured: fan-out at concurrency 16 was
        # slower than at 1 until the pool had grown).
        self.pool.fill(self.concurrency)
        fence = asyncio.create_task(self._fence())
        try:
            await self._connect_forever()
        finally:
            fence.cancel()
            await self.pool.close()
            await self._http.aclose()
            await self.assets.close()
            self.index.close()

    def _spawn(self, coroutine: Any) -> None:
        """Run a coroutine in the background, holding a reference until it is done
        (the event loop keeps only weak ones: an unreferenced task can vanish)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Stop gracefully: the first call drains (the server assigns nothing
        more; running executions finish and report, for at most
        ``drain_timeout`` seconds). A second call, or the timeout, kills what
        still runs and tells the server, which abandons it at once."""
        if self._draining is None and self.pool.busy and self.requests.connected.is_set():
            log.info(
                "draining: finishing %d execution(s); stop again to kill them",
                len(self.pool.busy),
            )
            self._draining = asyncio.ensure_future(self._drain())
            return
        self._stop_now()

    async def _drain(self) -> None:
        self._fire("drain", {})
        deadline = time.monotonic() + self.drain_timeout
        while self._held() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._stop_now()

    def _stop_now(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        killed = sorted(self.pool.busy)
        for execution_id in killed:
            self.pool.abort(execution_id)
        if killed and self.requests.connected.is_set():
            log.info("killed %d running execution(s)", len(killed))
            self._spawn(self._close_after(self.request("abandon", {"executions": killed})))
        elif self.requests.socket is not None:
            self._spawn(self.requests.socket.close())

    async def _close_after(self, acknowledged: asyncio.Future[Any]) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(acknowledged, timeout=1)
        if self.requests.socket is not None:
            await self.requests.socket.close()

    def run_in_thread(self) -> None:
        """Run in the calling (non-main) thread with its own event loop; see ``stop_threadsafe``."""

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await self.run()

        asyncio.run(main())

    def stop_threadsafe(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.stop)

    async def _connect_forever(self) -> None:
        delay = 0.1
        while not self._stopping:
            url = self._http.agent_url()
            try:
                # No per-message compression: messages are small control frames
                # (values over the blob threshold travel as blobs), and deflating
                # each one cost more CPU than it saved on every link we measured.
                async with websockets.connect(
                    url,
                    max_size=None,
                    ping_interval=None,
                    compression=None,
                    additional_headers=self._http.headers,
                ) as ws:
                    self.requests.socket = ws
                    if self._stopping:  # stopped while connecting: nobody closed this one
                        break
                    await self._session(ws)
                    delay = 0.1
            except (TimeoutError, OSError, websockets.WebSocketException) as e:
                if isinstance(e, websockets.ConnectionClosed) and e.rcvd and _refused(e.rcvd.code):
                    raise CofluxError(f"the server refused this agent: {e.rcvd.reason}") from None
                if isinstance(e, websockets.ConnectionClosed) and e.rcvd and e.rcvd.code == 1009:
                    # A server with a smaller limit than ours: measure against less,
                    # so what it refused is cut or refused here, not sent again.
                    self.requests.message_limit = max(FRAME_BYTES, self.requests.message_limit // 2)
                log.info("not connected to %s (%s); retrying in %.1fs", self.server, e, delay)
                self._next_server()
            finally:
                self.requests.socket = None
                self.requests.connected.clear()
            if self._stopping:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._longest_backoff())

    def _longest_backoff(self) -> float:
        """The longest wait between reconnects: ``COFLUX_RECONNECT_CAP`` (5 s), and
        at most a fifth of the time before this agent fences (0.75 x the server's
        agent timeout, from its welcome), so a short cut with a short
        ``--agent-timeout`` is healed by reconnecting before the fence kills work."""
        if self._fence_after is None:
            return self.reconnect_cap
        return min(self.reconnect_cap, self._fence_after / 5)

    def _next_server(self) -> None:
        self._http.next_server()
        self.server = self._http.server

    async def _session(self, ws: Any) -> None:
        hello = {
            "id": 0,
            "method": "hello",
            "params": {
                "session_id": self.session_id,
                "environment": self.environment,
                "repositories": sorted(self.manifests),
                "manifests": self.manifests,
                "concurrency": self.concurrency,
                "provides": self.provides,
                "provenance": self.provenance,
                "executions": self._held(),
                "batches": True,
                "outcomes": True,
            },
        }
        await ws.send(protocol.encode(hello))
        # The reply comes first; what the server sent with it (an ``execute``)
        # is handled once the session is set up.
        reply, *early = protocol.decode_server_frame(await ws.recv())
        if reply.error is not None:
            error = reply.error.to_error()
            raise type(error)(f"the server refused this agent: {error}")
        welcome = reply.result if isinstance(reply.result, dict) else {}
        self._last_contact = time.monotonic()
        timeout = float(welcome.get("agent_timeout") or 30)
        self._fence_after = 0.75 * timeout
        # A server that doesn't say (an older one): several per timeout.
        self.heartbeat_interval = float(welcome.get("heartbeat_interval") or min(5.0, timeout / 6))
        log.info("connected to %s as session %s", self.server, self.session_id)
        self.requests.connected.set()
        await self.requests.resend(ws)
        if self._draining is not None:
            self._fire("drain", {})  # a restarted server knows nothing of it
        if self.on_connected is not None:
            self.on_connected()
        for message in early:
            self._on_server_message(message)
        heartbeat = asyncio.create_task(self._heartbeat(ws))
        try:
            async for text in ws:
                self._last_contact = time.monotonic()
                for message in protocol.decode_server_frame(text):
                    self._on_server_message(message)
        finally:
            heartbeat.cancel()

    def _held(self) -> list[str]:
        """The executions this agent has: received (even if not started yet),
        running, or finished with a result the server has not acknowledged. The
        server abandons a started execution missing from the list, and assigns
        again one that never arrived (invariant I4)."""
        return sorted(self.dispatch.held() | self.requests.unreported())

    async def _heartbeat(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            # What this agent still runs (or has results for): the server
            # abandons any started execution missing from the list.
            executions = self._held()
            # An id, so the server answers: the answer is what proves contact.
            heartbeat = {"id": -1, "method": "heartbeat", "params": {"executions": executions}}
            await send_text(ws, json.dumps(heartbeat))

    async def _fence(self) -> None:
        """Invariant I2: an agent that has not heard from the server for 0.75 x its
        timeout kills its running tasks, before the server abandons and retries them,
        so a step never has two live attempts."""
        while True:
            if self._fence_after is None:  # never connected: nothing runs yet
                await asyncio.sleep(0.05)
                continue
            # Wake at the deadline itself, not on a cadence: a check every half
            # heartbeat could come too late for a short timeout (the first one
            # slept the default interval, before the server had told its own).
            remaining = self._last_contact + self._fence_after - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining + 0.005)
                continue  # contact may have come meanwhile: look again
            if self.pool.busy:
                for execution_id in sorted(self.pool.busy):
                    self.pool.abort(execution_id)
                silence = time.monotonic() - self._last_contact
                log.warning("fenced: lost contact with server for %.1f s", silence)
            await asyncio.sleep(min(0.1, self._fence_after / 10))

    # --- requests to the server ------------------------------------------------

    def request(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        """Send a request; it stays pending (and is re-sent) until the server answers."""
        return self.requests.request(method, params)

    def _fire(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        return self.requests.fire(method, params)

    def _on_server_message(self, message: protocol.ServerMessage) -> None:
        if message.is_answer:
            self.requests.answer(message)
            return
        params = protocol.params_of(message)
        if isinstance(params, protocol.CloseParams):
            # The server expired this session (it heard nothing for its timeout):
            # reconnect, which registers the session afresh.
            log.warning("server closed the session: %s", params.reason)
            if self.requests.socket is not None:
                self._spawn(self.requests.socket.close())
        else:
            self.dispatch.on_server_message(params)


def run_agent(agent: Agent) -> None:
    """Run an agent until SIGINT/SIGTERM."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    started = time.monotonic()
    asyncio.run(main())
    log.info("agent stopped after %.1fs", time.monotonic() - started)
