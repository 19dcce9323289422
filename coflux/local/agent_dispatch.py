"""An agent's executions: handing what the server assigns to workers, and relaying what they say.

The server sends ``execute`` (run this), ``outcome`` (a step one of our
executions submitted has ended) and ``abort``; each execution's worker sends
frames back: log lines, requests (calls, results, blobs, assets), the
outcome. An execution's outcome is reported after every call it made was sent
(submissions before outcomes), and its dependencies on outcomes it read are
reported before its result (recorded while it is running).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import CofluxError, InvalidInput
from ..execution import framing as frames
from ..records.values import Value
from ..remote import agent_protocol as protocol
from ..remote.server import failpoints
from .activity import ExecutionLines
from .agent_assets import AgentAssets
from .agent_logs import LogShipper
from .agent_requests import Requests
from .workers import Worker, WorkerPool

log = logging.getLogger("coflux.agent")


class Dispatch:
    def __init__(
        self,
        pool: WorkerPool,
        requests: Requests,
        assets: AgentAssets,
        logs: LogShipper,
        executions: ExecutionLines,
        spawn: Any,
        tasks: set[asyncio.Future[Any]],
    ) -> None:
        self.pool = pool
        self.requests = requests
        self.assets = assets
        self.logs = logs
        self.executions = executions
        self._spawn = spawn
        self._tasks = tasks
        pool.on_message = self._on_worker_message
        pool.on_exit = self._on_worker_exit
        #: Executions received and waiting for a worker (then in ``pool.busy``).
        self.receiving: set[str] = set()
        #: Calls of an execution received from it and not yet sent to the server.
        self._unsent: dict[str, set[asyncio.Future[None]]] = {}
        #: (caller, target) pairs of outcomes read by executions, sent together.
        self._dependencies: list[list[str]] = []

    def held(self) -> set[str]:
        """Executions received (even if not started yet) or running here."""
        return self.receiving | self.pool.busy.keys()

    # --- from the server -----------------------------------------------------------

    def on_server_message(self, params: Any) -> None:
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
            self.receiving.discard(params.execution_id)
            if self.pool.abort(params.execution_id):
                self.executions.ended(params.execution_id, "aborted")

    async def _execute(self, params: protocol.ExecuteParams) -> None:
        execution_id = params.execution_id
        if execution_id in self.pool.busy or execution_id in self.receiving:
            return  # already running (a re-sent assignment)
        self.receiving.add(execution_id)
        try:
            worker = await self.pool.acquire(execution_id)
        except CofluxError as e:
            self._report(execution_id, None, {"type": "coflux.RepositoryError", "message": str(e)})
            return
        finally:
            aborted = execution_id not in self.receiving
            self.receiving.discard(execution_id)
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

        self.requests.fire("started", {"execution_id": execution_id}).add_done_callback(refused)
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
        self.requests.fire("put_result", params)

    # --- from the workers ------------------------------------------------------------

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
                self.requests.fire("suspend", {"execution_id": execution_id, **message.suspend})
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
            if message.method == "schedule" and _inline(message.params):
                self._relay_schedule(worker, message)
                return
            sending = None
            if message.method == "schedule" and worker.execution_id is not None:
                # A call not yet sent to the server: a crash of the execution is
                # reported only after it (submissions before outcomes).
                sending = asyncio.get_running_loop().create_future()
                unsent = self._unsent.setdefault(worker.execution_id, set())
                unsent.add(sending)
                sending.add_done_callback(unsent.discard)
            self._spawn(self._on_worker_request(worker, message, sending))

    def _relay_schedule(self, worker: Worker, message: frames.Request) -> None:
        """A call or submission with no blob to upload first: sent to the server
        now and answered from its future's callback, with no task of its own (a
        task per step was a tenth of the agent's cost in a cached re-run). Sent
        as it arrives, so it can never be behind the execution's outcome."""
        id = message.id

        def reply(answer: asyncio.Future[Any]) -> None:
            if answer.cancelled():
                return
            error = answer.exception()  # retrieved even when nobody is told
            if worker.process.returncode is not None:
                return
            if error is None:
                worker.send(frames.Response(id=id, result=answer.result()))
            elif isinstance(error, CofluxError):
                worker.send(frames.Response(id=id, error=str(error), code=error.code))
            else:
                raise error

        self.requests.request("schedule", message.params).add_done_callback(reply)

    async def _on_worker_request(
        self, worker: Worker, message: frames.Request, sending: asyncio.Future[None] | None = None
    ) -> None:
        method, params = message.method, message.params
        request = self.requests.request
        try:
            if method == "schedule":
                try:
                    for argument in params["arguments"]:
                        await self.assets.upload(Value.from_dict(argument))
                    answer = request("schedule", params)
                finally:
                    if sending is not None:
                        sending.set_result(None)
                result = await answer
            elif method == "checkpoint":
                for argument in params["arguments"]:
                    await self.assets.upload(Value.from_dict(argument))
                result = await request(method, params)
            elif method in ("get_result", "cancel"):
                result = await request(method, params)
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
            self.requests.fire("dependencies", {"dependencies": pairs})

    def _on_worker_exit(self, worker: Worker) -> None:
        execution_id = worker.execution_id
        if execution_id is None:
            return
        self.pool.busy.pop(execution_id, None)
        self.assets.forget(execution_id)
        # Still held until its failure is reported: a heartbeat meanwhile would
        # have the server abandon (and retry) what failed.
        self.receiving.add(execution_id)

        async def report() -> None:
            code = await worker.process.wait()
            await asyncio.gather(*self._unsent.pop(execution_id, ()))
            self.receiving.discard(execution_id)
            cause = f"killed by signal {-code}" if code < 0 else f"process exited with code {code}"
            self._report(execution_id, None, {"type": "coflux.ExecutionError", "message": cause})

        self._spawn(report())


def _inline(params: dict[str, Any]) -> bool:
    """Whether a request's arguments hold no blob (nothing to upload first). A
    malformed one takes the path that answers it as malformed."""
    arguments = params.get("arguments")
    if not isinstance(arguments, list):
        return False
    try:
        return all(Value.from_dict(a).blob is None for a in arguments)
    except (KeyError, TypeError, AttributeError, ValueError):
        return False
