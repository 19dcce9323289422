"""The agent: connects out to the server, hosts repositories, executes what it is assigned.

The agent keeps one WebSocket to the server and a pool of execution
processes. Requests it sends (results, logs, calls to other targets) stay
pending until the server answers; when the connection drops, the agent
reconnects with backoff under the same session and sends them again, so
nothing it already had is lost (the server recognises repeats).

Here: the connection and the requests over it, and handing executions to
workers. Log shipping under back-pressure is ``agent_logs``, blobs and assets
``agent_assets`` (moved by ``blob_transfers``), the local index's buffer
``agent_index``; messages are typed in ``coflux.remote.agent_protocol`` and
frames in ``coflux.execution.framing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
from ..errors import CofluxError, InvalidInput
from ..execution import framing as frames
from ..execution.loader import manifests
from ..records.connection import MAX_MESSAGE_BYTES, RECONNECTABLE_CLOSE_CODES
from ..records.placement import Tags
from ..records.values import Value
from ..remote import agent_protocol as protocol
from ..remote.async_client import AsyncClient
from ..remote.server import failpoints
from . import oversize
from .activity import ExecutionLines
from .agent_assets import AgentAssets
from .agent_index import IndexBuffer
from .agent_logs import FRAME_BYTES, LogShipper
from .blob_transfers import group as _group
from .follow import HeadMoved
from .provenance import provenance
from .workers import Worker, WorkerPool

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
        self.pool.on_message = self._on_worker_message
        self.pool.on_exit = self._on_worker_exit
        #: Seconds between heartbeats: as the server says in its welcome (see
        #: ``_session``), so that a short ``--agent-timeout`` gets quick ones.
        self.heartbeat_interval = 5.0
        #: The longest wait between reconnects (see ``_longest_backoff``).
        self.reconnect_cap = _env_float("COFLUX_RECONNECT_CAP", 5.0)
        #: Longest a graceful stop waits for running executions (seconds).
        self.drain_timeout = _env_float("COFLUX_DRAIN_TIMEOUT", 60.0)
        self._draining: asyncio.Future[None] | None = None
        self.manifests: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[dict[str, Any], asyncio.Future[Any]]] = {}
        self._socket: Any = None
        self._outgoing: list[dict[str, Any]] = []
        #: No message larger than this is sent (see ``oversize``).
        self.message_limit = MAX_MESSAGE_BYTES
        self._connected = asyncio.Event()
        #: Blob transfers and asset records, and the WebSocket's URL and headers.
        self._http = AsyncClient(server, project, timeout=60, token=token)
        self.assets = AgentAssets(self._http, self.store, self.index)
        #: Executions received and waiting for a worker (then in ``pool.busy``).
        self._receiving: set[str] = set()
        #: The line printed for each execution as it ends.
        self.executions = ExecutionLines()
        self.logs = LogShipper(self._fire)
        #: Calls of an execution received from it and not yet sent to the server.
        self._unsent: dict[str, set[asyncio.Future[None]]] = {}
        #: (caller, target) pairs of outcomes read by executions, sent together.
        self._dependencies: list[list[str]] = []
        self._stopping = False
        self._tasks: set[asyncio.Future[Any]] = set()
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
            if (moved or targets != previous.get(repository)) and self._connected.is_set():
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
        if self._draining is None and self.pool.busy and self._connected.is_set():
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
        if killed and self._connected.is_set():
            log.info("killed %d running execution(s)", len(killed))
            self._spawn(self._close_after(self.request("abandon", {"executions": killed})))
        elif self._socket is not None:
            self._spawn(self._socket.close())

    async def _close_after(self, acknowledged: asyncio.Future[Any]) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(acknowledged, timeout=1)
        if self._socket is not None:
            await self._socket.close()

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
                    self._socket = ws
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
                    self.message_limit = max(FRAME_BYTES, self.message_limit // 2)
                log.info("not connected to %s (%s); retrying in %.1fs", self.server, e, delay)
                self._next_server()
            finally:
                self._socket = None
                self._connected.clear()
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
        self._connected.set()
        for unanswered, _ in list(self._pending.values()):
            text = self._encode(unanswered)  # re-send what the old connection never answered
            if text is not None:
                await ws.send(text)
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
        unreported = {
            m["params"]["execution_id"]
            for m, _ in self._pending.values()
            if m["method"] in ("put_result", "suspend")
        }
        return sorted(self._receiving | self.pool.busy.keys() | unreported)

    async def _heartbeat(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            # What this agent still runs (or has results for): the server
            # abandons any started execution missing from the list.
            executions = self._held()
            # An id, so the server answers: the answer is what proves contact.
            heartbeat = {"id": -1, "method": "heartbeat", "params": {"executions": executions}}
            await self._send_text(ws, json.dumps(heartbeat))

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

    def _send_soon(self, message: dict[str, Any]) -> None:
        """Send at the end of this pass of the event loop, together with whatever
        else is sent in it (one frame and one write for a burst of requests)."""
        self._outgoing.append(message)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._send_outgoing)

    def _send_outgoing(self) -> None:
        batch, self._outgoing = self._outgoing, []
        # Unsent requests stay in ``_pending``: a new connection re-sends them.
        if batch and self._socket is not None and self._connected.is_set():
            encoded = [text for text in map(self._encode, batch) if text is not None]
            for frame in _frames(encoded):
                self._spawn(self._send_text(self._socket, frame))

    def _encode(self, message: dict[str, Any]) -> str | None:
        """The message as sent, or None when it is too large to send (``oversize``)."""
        return oversize.encode(message, self.message_limit, self._pending)

    async def _send_text(self, ws: Any, text: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(text)

    # --- requests to the server ------------------------------------------------

    def request(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        """Send a request; it stays pending (and is re-sent) until the server answers."""
        id = next(self._ids)
        message = {"id": id, "method": method, "params": params}
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[id] = (message, future)
        if self._socket is not None and self._connected.is_set():
            self._send_soon(message)
        return future

    def _fire(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        """A request nobody awaits: a refusal (say, a late result for a cancelled
        execution) is logged rather than lost as an unretrieved exception."""

        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.warning("%s refused: %s", method, future.exception())

        future = self.request(method, params)
        future.add_done_callback(done)
        return future

    def _on_server_message(self, message: protocol.ServerMessage) -> None:
        if message.is_answer:
            entry = self._pending.pop(message.id, None)  # type: ignore[arg-type]
            if entry is not None and not entry[1].done():
                if message.error is not None:
                    entry[1].set_exception(message.error.to_error())
                else:
                    entry[1].set_result(message.result)
            return
        params = protocol.params_of(message)
        if isinstance(params, protocol.ExecuteParams):
            if failpoints.hit("execute.before_start"):
                return  # as if the message never arrived
            self._spawn(self._execute(params))
        elif isinstance(params, protocol.OutcomeParams):
            # A step one of our executions submitted has ended: hand the outcome
            # to the execution, which may read it without asking (dropped if it ended).
            worker = self.pool.busy.get(params.execution_id)
            if worker is not None:
                worker.send(frames.Outcome(params.target_id, params.result))
        elif isinstance(params, protocol.AbortParams):
            self._receiving.discard(params.execution_id)
            if self.pool.abort(params.execution_id):
                self.executions.ended(params.execution_id, "aborted")
        elif isinstance(params, protocol.CloseParams):
            # The server expired this session (it heard nothing for its timeout):
            # reconnect, which registers the session afresh.
            log.warning("server closed the session: %s", params.reason)
            if self._socket is not None:
                self._spawn(self._socket.close())

    # --- executions --------------------------------------------------------------

    async def _execute(self, params: protocol.ExecuteParams) -> None:
        execution_id = params.execution_id
        if execution_id in self.pool.busy or execution_id in self._receiving:
            return  # already running (a re-sent assignment)
        self._receiving.add(execution_id)
        try:
            worker = await self.pool.acquire(execution_id)
        except CofluxError as e:
            self._report(execution_id, None, {"type": "coflux.RepositoryError", "message": str(e)})
            return
        finally:
            aborted = execution_id not in self._receiving
            self._receiving.discard(execution_id)
        if aborted:  # while a worker was being found
            self.pool.release(worker)
            return
        worker.send(
            frames.Execute(
                execution_id=execution_id,
                repository=params.repository,
                target=params.target,
                arguments=params.arguments,
                timeout=params.timeout,
            )
        )
        self.executions.started(execution_id, params.repository, params.target)

        def refused(future: asyncio.Future[Any]) -> None:
            # Assigned elsewhere meanwhile (this ``execute`` came too late): stop.
            if not future.cancelled() and future.exception() is not None:
                self.pool.abort(execution_id)

        self._fire("started", {"execution_id": execution_id}).add_done_callback(refused)
        timeout = params.timeout
        if timeout:
            asyncio.get_running_loop().call_later(
                timeout, self._time_out, execution_id, worker, timeout
            )

    def _time_out(self, execution_id: str, worker: Worker, timeout: float) -> None:
        """The ``timeout`` option: kill the execution's processes and fail it."""
        if self.pool.busy.get(execution_id) is not worker:
            return  # finished (or aborted) in time
        self.pool.abort(execution_id)
        log.info("%s timed out after %g s", execution_id, timeout)
        self._report(
            execution_id,
            None,
            {"type": "coflux.Timeout", "message": f"timed out after {timeout:g} s"},
        )

    def _report(
        self, execution_id: str, value: dict[str, Any] | None, error: dict[str, Any] | None
    ) -> None:
        self._send_dependencies()  # before the result: recorded while it is running
        self.logs.flush()
        self.executions.reported(execution_id, error)
        params: dict[str, Any] = {"execution_id": execution_id}
        if error is not None:
            params["error"] = {"traceback": "", **error}
        else:
            params["value"] = value
        self._fire("put_result", params)

    async def _on_worker_message(self, worker: Worker, message: frames.FromExecution) -> None:
        if isinstance(message, frames.Log):
            await self.logs.add(message.entry())
        elif isinstance(message, frames.Result):
            execution_id = message.execution_id
            if worker.execution_id != execution_id:
                return  # aborted meanwhile
            value, error = message.value, message.error
            if value is not None:
                try:
                    await self.assets.upload(Value.from_dict(value))
                except CofluxError as e:
                    value, error = None, {"type": "coflux.BlobError", "message": str(e)}
            self.pool.release(worker)
            self.assets.forget(execution_id)
            self._unsent.pop(execution_id, None)  # all sent: the worker had every answer
            if message.suspend is not None and error is None:
                self._send_dependencies()
                self.logs.flush()
                self.executions.ended(execution_id, "suspended")
                self._fire("suspend", {"execution_id": execution_id, **message.suspend})
            else:
                self._report(execution_id, value, error)
        elif isinstance(message, frames.Upload):
            # Blobs of an asset being persisted: upload them now, while the
            # execution stores the rest (``persist_asset`` waits for these).
            task = self.assets.begin_upload(message.execution_id, list(message.keys))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(message, frames.Used):
            # An execution read an outcome it was sent: the server records the
            # dependency, as it does for a ``get_result``.
            self._dependencies.append([message.execution_id, message.target_id])
            if len(self._dependencies) == 1:
                asyncio.get_running_loop().call_soon(self._send_dependencies)
        elif isinstance(message, frames.Request):
            sending = None
            if message.method == "schedule" and worker.execution_id is not None:
                # A call not yet sent to the server: a crash of the execution is
                # reported only after it (submissions before outcomes).
                sending = asyncio.get_running_loop().create_future()
                unsent = self._unsent.setdefault(worker.execution_id, set())
                unsent.add(sending)
                sending.add_done_callback(unsent.discard)
            self._spawn(self._on_worker_request(worker, message, sending))

    async def _on_worker_request(
        self, worker: Worker, message: frames.Request, sending: asyncio.Future[None] | None = None
    ) -> None:
        method, params = message.method, message.params
        try:
            if method == "schedule":
                try:
                    for argument in params["arguments"]:
                        await self.assets.upload(Value.from_dict(argument))
                    answer = self.request("schedule", params)
                finally:
                    if sending is not None:
                        sending.set_result(None)
                result = await answer
            elif method == "checkpoint":
                for argument in params["arguments"]:
                    await self.assets.upload(Value.from_dict(argument))
                result = await self.request(method, params)
            elif method in ("get_result", "cancel"):
                result = await self.request(method, params)
            elif method == "fetch_blob":
                await self.assets.download(params["key"])
                result = {}
            elif method == "persist_asset":
                result = await self.assets.persist_asset(params)
            elif method == "fetch_asset":
                result = await self.assets.fetch_asset(params["key"])
            else:
                raise CofluxError(f"unknown request {method!r}")
            reply = frames.Response(id=message.id, result=result)
        except CofluxError as e:
            reply = frames.Response(id=message.id, error=str(e), code=e.code)
        except (KeyError, TypeError) as e:  # params of the wrong shape: a bug, said so
            error = InvalidInput(f"malformed {method} request: {e!r}")
            reply = frames.Response(id=message.id, error=str(error), code=error.code)
        if worker.process.returncode is None:
            worker.send(reply)

    def _send_dependencies(self) -> None:
        pairs, self._dependencies = self._dependencies, []
        if pairs:
            self._fire("dependencies", {"dependencies": pairs})

    def _on_worker_exit(self, worker: Worker) -> None:
        execution_id = worker.execution_id
        if execution_id is None:
            return
        self.pool.busy.pop(execution_id, None)
        self.assets.forget(execution_id)
        # Still held until its failure is reported: a heartbeat meanwhile would
        # have the server abandon (and retry) what failed.
        self._receiving.add(execution_id)

        async def report() -> None:
            code = await worker.process.wait()
            await asyncio.gather(*self._unsent.pop(execution_id, ()))
            self._receiving.discard(execution_id)
            cause = f"killed by signal {-code}" if code < 0 else f"process exited with code {code}"
            self._report(execution_id, None, {"type": "coflux.ExecutionError", "message": cause})

        self._spawn(report())


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


def _frames(encoded: list[str]) -> list[str]:
    """Encoded messages joined into frames (JSON arrays) of about ``FRAME_BYTES``,
    well under the server's message limit; a larger message travels alone."""
    return [
        group[0] if len(group) == 1 else "[" + ",".join(group) + "]"
        for group in _group(encoded, lambda text: len(text) + 1, FRAME_BYTES, most=10_000)
    ]
