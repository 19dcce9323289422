"""The agent protocol over one WebSocket connection, free of FastAPI.

Messages are JSON objects, modelled in ``coflux.remote.agent_protocol`` and
validated where they arrive (the WebSocket route), so each handler here gets
typed params. Requests carry an ``id`` and get a response with
the same ``id`` and either ``result`` or ``error``; the server also sends
``execute``/``abort`` requests without ids. Every request from the agent
counts as a heartbeat. The first message must be ``hello``::

    {"method": "hello", "params": {"session_id", "environment", "repositories",
     "concurrency", "provides": {"gpu": "a100"}, "executions": ["RUN:N:A", ...],
     "batches": true, "outcomes": true}}

A frame may carry a JSON array of messages instead of one: the agent may
always send them, the server does when the agent's hello says ``batches``.
The acknowledgement of a ``started`` or ``dependencies`` (which the agent
never waits for) may wait up to ``LAZY_AFTER`` for another message to the
same agent, and travel with it; a refusal goes at once.

An agent whose hello says ``outcomes`` is sent the outcome of each step its
executions submit (``schedule`` without ``wait``) when the step ends::

    {"method": "outcome", "params": {"execution_id": CALLER, "target_id": REF, "result": {...}}}

so a workflow gathering many results reads them where it runs, instead of a
``get_result`` round trip each. Its agent then reports which outcomes were
read (``dependencies``), as ``get_result`` would have recorded them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ....errors import CofluxError, InvalidInput
from ....records.placement import validate_tags
from ....records.references import parse_execution_ref
from ....records.targets import TargetSpec
from ... import agent_protocol as protocol
from .project import ProjectOrchestrator, Session
from .provenance import provenance_of

log = logging.getLogger("coflux.server")

#: The most messages sent to an agent in one frame.
MAX_BATCH = 500
#: Seconds an acknowledgement nobody waits for (``started``, ``dependencies``)
#: may wait for something else going to the same agent, to travel with it.
LAZY_AFTER = 0.05
#: Requests whose plain acknowledgement the agent never waits for: it only
#: needs to hear of a refusal, which is sent at once.
_LAZY = frozenset({protocol.Started, protocol.Dependencies})
#: The most messages from one agent being handled at once (every handler only
#: waits for a commit, so this bounds memory, never deadlocks).
MAX_IN_FLIGHT = 256
#: The most target specs one connection keeps parsed (see ``_spec``).
SPECS_REMEMBERED = 1000


class AgentConnection:
    def __init__(
        self,
        orchestrator: ProjectOrchestrator,
        receive: Callable[[], Awaitable[list[protocol.AgentRequest | protocol.Refused] | None]],
        send: Callable[[Any], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
    ) -> None:
        self.orchestrator = orchestrator
        self._receive = receive
        self._send = send
        self._close = close
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.session: Session | None = None
        #: Whether the agent takes a JSON array of messages in one frame.
        self.batches = False
        #: Whether the agent takes ``outcome`` messages for the steps it submits.
        self.outcomes = False
        self._closed = False
        #: Acknowledgements waiting to travel with the next message (``post_lazily``).
        self._lazy: list[dict[str, Any]] = []
        self._lazy_timer: asyncio.TimerHandle | None = None
        #: Parsed target specs by the JSON text of the dict each came from.
        self._specs: dict[str, TargetSpec] = {}

    def _spec(self, target: dict[str, Any]) -> TargetSpec:
        """The spec a ``schedule`` names, parsed once per connection: a fan-out
        sends the same target each time, and parsing it (five frozen records,
        the tags checked) was a tenth of a cache hit's cost. Keyed by its exact
        JSON text (1, 1.0 and true are equal in Python, not here)."""
        key = protocol.encode(target)
        spec = self._specs.get(key)
        if spec is None:
            spec = TargetSpec.from_dict(target)
            if len(self._specs) >= SPECS_REMEMBERED:
                self._specs.clear()
            self._specs[key] = spec
        return spec

    def post(self, message: dict[str, Any]) -> None:
        """Queue a message to the agent (called from the orchestrator's callbacks)."""
        if not self._closed:
            self._release_lazy()
            self._outbox.put_nowait(message)

    def post_lazily(self, message: dict[str, Any]) -> None:
        """Queue a message that may wait (at most ``LAZY_AFTER``) for another one:
        in a chain of calls, a ``started`` report's acknowledgement then goes in
        the frame of the caller's answer, instead of a frame (a write, a read
        and a wake-up of the agent) of its own."""
        if self._closed:
            return
        self._lazy.append(message)
        if self._lazy_timer is None:
            loop = asyncio.get_running_loop()
            self._lazy_timer = loop.call_later(LAZY_AFTER, self._release_lazy)

    def _release_lazy(self) -> None:
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        lazy, self._lazy = self._lazy, []
        for message in lazy:
            self._outbox.put_nowait(message)

    async def _writer(self) -> None:
        """Send queued messages; an agent that said ``batches`` in its hello gets
        what queued up meanwhile as one JSON array (one frame, one write)."""
        closing = False
        while not closing and (message := await self._outbox.get()) is not None:
            if self.batches:
                # One turn of the loop first: a commit releases a result's
                # callbacks (a caller's answer) in one turn and its waiters
                # (the acknowledgement) in the next; both go in one frame, one
                # write and one wake-up of the agent, not two.
                await asyncio.sleep(0)
            batch = [message]
            while self.batches and not self._outbox.empty() and len(batch) < MAX_BATCH:
                queued = self._outbox.get_nowait()
                if queued is None:
                    closing = True
                    break
                batch.append(queued)
            await self._send(batch if len(batch) > 1 else message)
            ending = next((m for m in batch if m.get("method") == "close"), None)
            if ending is not None:
                # Told why, then closed with a code of its own (the session
                # timed out, or a newer connection of it replaced this one).
                params = ending["params"]
                await self._close(int(params.get("code") or 1000), str(params["reason"]))
                return

    async def serve(self) -> None:
        first = await self._receive()
        hello = first[0] if first else None
        if isinstance(hello, protocol.Refused) and hello.method == "hello":
            raise InvalidInput(f"malformed hello: {hello.error}")
        if not isinstance(hello, protocol.Hello):
            raise InvalidInput("the first message must be hello")
        params = hello.params
        self.batches = params.batches
        self.outcomes = params.outcomes
        try:
            provides = validate_tags({} if params.provides is None else params.provides, "provides")
            provenance = provenance_of(params.provenance)
        except InvalidInput as e:
            raise InvalidInput(f"malformed hello: {e}") from None
        environment = params.environment
        for repository, targets in params.manifests.items():
            await self.orchestrator.register(environment, repository, targets, provenance)
        session = self.orchestrator.connect(
            session_id=params.session_id,
            environment=environment,
            repositories=set(params.repositories),
            concurrency=max(1, params.concurrency),
            send=self.post,
            executions=params.executions,
            provides=provides,
        )
        session.provenance = provenance
        # The reply is queued before anything the orchestrator may now send
        # (an ``execute``), so the agent always sees it first.
        settings = self.orchestrator.settings
        welcome = {
            "session_id": session.id,
            "agent_timeout": settings.agent_timeout,
            "heartbeat_interval": settings.heartbeat_interval,
        }
        self.post({"id": hello.id, "result": welcome})
        self.session = session
        writer = asyncio.create_task(self._writer())
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                received = await self._receive()
                if received is None:
                    break
                self.orchestrator.heartbeat(session)
                for message in received:
                    if isinstance(message, protocol.Schedule) and not message.params.wait:
                        self._submit(session, message)
                        continue
                    task = asyncio.create_task(self._handle(session, message))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    if len(tasks) >= MAX_IN_FLIGHT:
                        # I9: an agent sending faster than its messages are
                        # committed waits, rather than the server buffering it
                        # all; meanwhile its session counts as heard.
                        session.reading = True
                        try:
                            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            session.reading = False
                            self.orchestrator.heartbeat(session)
        finally:
            self.orchestrator.disconnect(session, self.post)
            self._release_lazy()
            self._outbox.put_nowait(None)
            self._closed = True  # outcomes of steps submitted through it go nowhere now
            for task in tasks:
                task.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _handle(
        self, session: Session, message: protocol.AgentRequest | protocol.Refused
    ) -> None:
        id = message.id
        try:
            if isinstance(message, protocol.Refused):
                raise message.error  # malformed: validated where it arrived (the route)
            handler = self._handlers.get(type(message))
            if handler is None:  # a second hello
                raise InvalidInput(f"unexpected {type(message).__name__.lower()}")
            result = await handler(self, session, message.params, id)
            if result is not _DEFERRED and id is not None:
                if type(message) in _LAZY:
                    self.post_lazily({"id": id, "result": result})
                else:
                    self.post({"id": id, "result": result})
        except CofluxError as e:
            if self.orchestrator.batch.refused is not None:
                # The database refused a write: this connection is closing and
                # the agent sends the message again to the reloaded orchestrator.
                return
            if id is not None:
                self.post({"id": id, "error": {"code": e.code, "message": str(e)}})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # Parameters of the right types that the records refuse (a target spec).
            if id is not None:
                self.post(
                    {"id": id, "error": {"code": "invalid", "message": f"malformed request: {e}"}}
                )

    def _submit(self, session: Session, message: protocol.Schedule) -> None:
        """A ``schedule`` without ``wait`` (a submit), handled as it arrives: no
        task and no future of its own. Its answer is queued by the commit that
        stores the step (after that, it waits for nothing), so a fan-out's
        thousand submits cost one commit and no thousand tasks."""
        try:
            answer = self._schedule(session, message.params)
        except CofluxError as e:
            if message.id is not None:
                self.post({"id": message.id, "error": {"code": e.code, "message": str(e)}})
            return
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if message.id is not None:
                error = {"code": "invalid", "message": f"malformed request: {e}"}
                self.post({"id": message.id, "error": error})
            return
        id = message.id
        if id is not None:
            # Never run if the database refuses the commit: the agent sends it
            # again to the reloaded orchestrator, as for any refused request.
            self.orchestrator.batch.after_commit(lambda: self.post({"id": id, "result": answer}))

    def _new_step(self, session: Session, params: protocol.ScheduleParams) -> str:
        """The step (or the cached or memoised one) a ``schedule`` asks for."""
        return self.orchestrator.schedule(
            session,
            parent_ref=params.execution_ref,
            call_index=params.call_index,
            repository=params.repository,
            spec=self._spec(params.target),
            arguments=params.arguments,
        )

    def _schedule(self, session: Session, params: protocol.ScheduleParams) -> dict[str, Any]:
        parent = params.execution_ref
        ref = self._new_step(session, params)
        # Already finished (a cache or memo hit): the outcome goes with the
        # answer, so the caller's .result() needs no round trip. Else it is
        # sent to the caller's agent when the step ends (registered before
        # the commit, so no outcome can come first).
        known = self.orchestrator.known_result(ref)
        if known is None and self.outcomes:

            def push(result: dict[str, Any]) -> None:
                params = {"execution_id": parent, "target_id": ref, "result": result}
                self.post({"method": "outcome", "params": params})

            self.orchestrator.follow(ref, push)
        return {"execution_id": ref, **({"result": known} if known else {})}

    async def _on_register(self, session: Session, params: protocol.RegisterParams, id: Any) -> Any:
        """The agent's code changed (``coflux dev`` reloaded): its new manifest."""
        environment = self.orchestrator.environment_names[session.environment_id]
        provenance = provenance_of(params.provenance)
        await self.orchestrator.register(environment, params.repository, params.targets, provenance)
        session.provenance = provenance
        return {}

    async def _on_drain(self, session: Session, params: protocol.NoParams, id: Any) -> Any:
        """The agent is stopping: no new assignments; it finishes what it runs."""
        session.draining = True
        return {}

    async def _on_abandon(
        self, session: Session, params: protocol.ExecutionsParams, id: Any
    ) -> Any:
        """The agent killed these (a forced stop): abandoned now, not after the timeout."""
        self.orchestrator.abandon(session, params.executions)
        await self.orchestrator.batch.committed()
        return {}

    async def _on_heartbeat(
        self, session: Session, params: protocol.HeartbeatParams, id: Any
    ) -> Any:
        if params.executions is not None:
            self.orchestrator.heartbeat(session, params.executions)
        return {}

    async def _on_cancel(self, session: Session, params: protocol.CancelParams, id: Any) -> Any:
        target = parse_execution_ref(params.target_ref)
        return {"cancelled": await self.orchestrator.cancel(target.step_ref)}

    async def _on_started(self, session: Session, params: protocol.ExecutionParams, id: Any) -> Any:
        await self.orchestrator.started(session, params.execution_ref)
        return {}

    async def _on_put_result(
        self, session: Session, params: protocol.PutResultParams, id: Any
    ) -> Any:
        await self.orchestrator.put_result(
            session, params.execution_ref, params.value, params.error
        )
        return {}

    async def _on_checkpoint(
        self, session: Session, params: protocol.CheckpointParams, id: Any
    ) -> Any:
        await self.orchestrator.checkpoint(session, params.execution_ref, params.arguments)
        return {}

    async def _on_suspend(self, session: Session, params: protocol.SuspendParams, id: Any) -> Any:
        await self.orchestrator.suspend(
            session, params.execution_ref, params.until, params.wait_for
        )
        return {}

    async def _on_put_logs(self, session: Session, params: protocol.PutLogsParams, id: Any) -> Any:
        await self.orchestrator.put_logs(session, params.messages)
        return {}

    async def _on_schedule(self, session: Session, params: protocol.ScheduleParams, id: Any) -> Any:
        if not params.wait:  # ``serve`` handles these as they arrive (``_submit``)
            answer = self._schedule(session, params)
            await self.orchestrator.batch.committed()
            return answer
        parent = params.execution_ref
        ref = self._new_step(session, params)

        # A plain call: answered once the result is there (one round trip, not
        # two). Registered before the commit, so it joins the transaction that
        # creates the step.
        def respond(result: dict[str, Any]) -> None:
            self.post({"id": id, "result": {"execution_id": ref, "result": result}})

        self.orchestrator.get_result(ref, respond, session, parent)
        # Nothing is acknowledged until the result: no need to wait for the disk.
        await self.orchestrator.batch.committed(durable=False)
        return _DEFERRED

    async def _on_dependencies(
        self, session: Session, params: protocol.DependenciesParams, id: Any
    ) -> Any:
        """Outcomes the agent's executions read from ``outcome`` messages."""
        self.orchestrator.record_dependencies(session, params.dependencies)
        await self.orchestrator.batch.committed()
        return {}

    async def _on_get_result(
        self, session: Session, params: protocol.GetResultParams, id: Any
    ) -> Any:
        answered = False

        def respond(result: dict[str, Any]) -> None:
            nonlocal answered
            if not answered:
                answered = True
                self.post({"id": id, "result": result})

        self.orchestrator.get_result(params.target_ref, respond, session, params.execution_ref)
        timeout = params.timeout
        if timeout is not None and not answered:
            # Under `suspense`: if the result isn't there in time, the caller suspends.
            asyncio.get_running_loop().call_later(
                max(0.0, timeout), lambda: respond({"state": "pending"})
            )
        return _DEFERRED

    #: Each message's handler, by its model (a second ``hello`` has none).
    _handlers: dict[type, Callable[..., Awaitable[Any]]] = {
        protocol.Register: _on_register,
        protocol.Drain: _on_drain,
        protocol.Abandon: _on_abandon,
        protocol.Heartbeat: _on_heartbeat,
        protocol.Cancel: _on_cancel,
        protocol.Started: _on_started,
        protocol.PutResult: _on_put_result,
        protocol.Checkpoint: _on_checkpoint,
        protocol.Suspend: _on_suspend,
        protocol.PutLogs: _on_put_logs,
        protocol.Schedule: _on_schedule,
        protocol.Dependencies: _on_dependencies,
        protocol.GetResult: _on_get_result,
    }


_DEFERRED = object()
