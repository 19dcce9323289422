"""What a running execution asks of the orchestrator, through its agent.

It calls targets (``schedule``), reads or follows other executions' outcomes,
records a sensor's checkpoint, suspends itself, reports that it started,
its logs and its outcome. Every request names an execution the asking
agent's session runs (``LiveIndex.owned``); the state machine makes the
changes, and the caller awaits the batch's commit before answering.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ....errors import Conflict, InvalidInput, NotFound
from ....records.names import validate_repository_name, validate_target_name
from ....records.targets import TargetSpec
from .. import failpoints
from ..tables import T_EXECUTION, T_LOG
from . import lookups, restore
from .batch import Batch
from .clock import Clock
from .dispatch import Dispatcher
from .ids import IdAllocator
from .index import LiveIndex
from .keys import memo_key, references, result_message, reuse_key
from .machine import ExecutionMachine
from .manifests import Manifests
from .reuse import ReuseRules
from .state import LiveExecution, ResultCallback, Session


class RunningCalls:
    def __init__(
        self,
        engine: Engine,
        batch: Batch,
        ids: IdAllocator,
        clock: Clock,
        index: LiveIndex,
        manifests: Manifests,
        rules: ReuseRules,
        machine: ExecutionMachine,
        dispatcher: Dispatcher,
    ) -> None:
        self.engine = engine
        self.batch = batch
        self.ids = ids
        self.clock = clock
        self.index = index
        self.manifests = manifests
        self.rules = rules
        self.machine = machine
        self.dispatcher = dispatcher

    def schedule(
        self,
        session: Session,
        parent_ref: str,
        call_index: int,
        repository: str,
        spec: TargetSpec,
        arguments: list[dict[str, Any]],
    ) -> str:
        """A running execution calls a target: a new step in the same run, staged
        (the caller awaits ``batch.committed()``; a plain call first registers
        its wait, so that joins the same transaction).

        A workflow called from a task is spawned as a run of its own, whose
        initial step names the caller as its parent.
        """
        parent = self.index.owned(session, parent_ref)
        validate_repository_name(repository)
        validate_target_name(spec.name)
        existing = self._step_by_call(parent, call_index)
        if existing is not None:
            return existing  # a re-sent request after a reconnect
        for ref in references(arguments):
            self.index.execution_id(ref)
        machine = self.machine
        if spec.type == "workflow":
            run_id = machine.new_run(parent.environment_id)
            self.index.step_counters[run_id] = 1
            execution = machine.new_step(
                run_id, 1, repository, spec, arguments, parent.environment_id, parent.id, call_index
            )
            parent.calls[call_index] = execution.ref
            return execution.ref
        run_id = parent.step.run_id
        code = self.manifests.code_hash(parent.environment_id, repository, spec.name)
        memo = memo_key(repository, spec, arguments)
        if memo is not None:
            memoised = self.rules.memo_hit(run_id, memo)
            # In an incremental re-run, changed code runs again even where the memo matches.
            if memoised is not None and (
                not parent.incremental or self.index.code_hash_of(memoised) == code
            ):
                parent.calls[call_index] = memoised
                return memoised
        reused = None
        if parent.incremental:
            # Unchanged code and arguments reuse the run's earlier result.
            key = reuse_key(repository, spec, code, arguments)
            reused = self.rules.reusable(run_id, key, parent.environment_id) if key else None
        execution = machine.new_step(
            run_id,
            machine.next_step_number(run_id),
            repository,
            spec,
            arguments,
            parent.environment_id,
            parent.id,
            call_index,
            incremental=parent.incremental,
            reused=reused,
        )
        parent.calls[call_index] = execution.ref
        return execution.ref

    def _step_by_call(self, parent: LiveExecution, call_index: int) -> str | None:
        if call_index in parent.calls:
            return parent.calls[call_index]
        if not parent.restored:
            return None
        # Loaded after a server restart: earlier calls are only in the database,
        # made by this attempt or by the suspended ones it resumes.
        with self.engine.connect() as c:
            callers = restore.resumed_attempts(c, parent.step.id, parent.attempt)
            return lookups.step_called(c, [parent.id, *callers], call_index)

    def get_result(
        self,
        execution_ref: str,
        callback: ResultCallback,
        session: Session | None = None,
        waiting_ref: str | None = None,
    ) -> None:
        """Call ``callback`` with the step's final outcome, now or when it finishes.

        A retried execution is followed to its newest attempt.
        """
        index = self.index
        id = index.latest(index.execution_id(execution_ref))
        waiting = index.owned(session, waiting_ref) if session and waiting_ref else None
        if waiting is not None:
            self.machine.record_dependency(waiting, id)
        if id not in index.live:
            id, result = index.follow_replaced(id, index.stored_result(id))
            if result is not None:
                self.batch.after_commit(lambda: callback(result))
                return
        if waiting is not None and session is not None:
            session.waiting[waiting.id] = session.waiting.get(waiting.id, 0) + 1
            self.dispatcher.request()

            def resume(result: dict[str, Any], session: Session = session) -> None:
                count = session.waiting.get(waiting.id, 0) - 1
                if count > 0:
                    session.waiting[waiting.id] = count
                else:
                    session.waiting.pop(waiting.id, None)
                callback(result)

            index.waiters.setdefault(id, []).append(resume)
        else:
            index.waiters.setdefault(id, []).append(callback)

    def follow(self, ref: str, callback: ResultCallback) -> None:
        """Call ``callback`` with the step's final outcome when this live execution
        (or the attempt that replaces it) ends; nothing for one not live. Unlike
        ``get_result``, nobody is recorded as waiting: the caller may never read it."""
        id = self.index.live_refs.get(ref)
        if id is not None and id in self.index.live:
            self.index.waiters.setdefault(id, []).append(callback)

    def record_dependencies(self, session: Session, pairs: list[tuple[str, str]]) -> None:
        """Executions of this session read these steps' outcomes (sent by ``follow``)."""
        for waiting_ref, target_ref in pairs:
            try:
                waiting = self.index.owned(session, waiting_ref)
                target = self.index.latest(self.index.execution_id(target_ref))
            except (NotFound, InvalidInput):
                continue  # ended meanwhile, or a reference that names nothing
            self.machine.record_dependency(waiting, target)

    async def checkpoint(self, session: Session, ref: str, arguments: list[dict[str, Any]]) -> None:
        """A sensor records where it got to; a restart begins from here."""
        execution = self.index.owned(session, ref)
        if execution.step.type != "sensor":
            raise InvalidInput("checkpoint can only be called by a sensor")
        # The SDK binds a checkpoint to the sensor's signature (defaults filled in),
        # so it may hold more arguments than the sensor was started with, never fewer.
        if len(arguments) < len(execution.step.arguments):
            raise InvalidInput(
                f"checkpoint takes at least the sensor's {len(execution.step.arguments)} "
                "argument(s)"
            )
        execution.checkpoint = arguments
        self.batch.update(T_EXECUTION, execution.id, checkpoint=arguments)
        await self.batch.committed()

    async def suspend(
        self, session: Session, ref: str, until: float | None, wait_for: list[str]
    ) -> None:
        """The execution suspended itself: the step starts again from the top when due,
        or once what it waited for has finished. Its calls are remembered, so the
        next attempt refers to the same steps instead of making new ones."""
        execution = self.index.owned(session, ref)
        dependencies = {self.index.latest(self.index.execution_id(r)) for r in wait_for}
        delay = max(0.0, until - self.clock.time()) if until is not None else 0.0
        successor = self.machine.next_attempt(execution, delay, dependencies)
        successor.calls = dict(execution.calls)
        # Calls of a restored execution are in the database only: look there.
        successor.restored = execution.restored
        for dependency in dependencies:
            # Stored, so that after a restart the next attempt waits again.
            self.machine.record_dependency(successor, dependency)
        self.machine.finish(execution, "suspended", successor=successor)
        await self.batch.committed()

    async def put_result(
        self, session: Session, ref: str, value: dict[str, Any] | None, error: dict[str, Any] | None
    ) -> None:
        """An agent reports an outcome; a re-sent identical report is acknowledged (I1)."""
        execution = self.index.live_by_ref(ref)
        if execution is None:
            stored = self.index.stored_result(self.index.execution_id(ref))
            if stored is None:
                raise NotFound(f"execution {ref} is not running on this agent")
            if stored == result_message("failed" if error else "succeeded", value, error):
                return  # already recorded, same outcome: acknowledge again
            raise Conflict(f"execution {ref} already has a different outcome ({stored['state']})")
        if execution.session_id != session.id:
            raise NotFound(f"execution {ref} is not running on this agent")
        self.machine.finish(execution, "failed" if error else "succeeded", value, error)
        if error is not None and error.get("type") == "coflux.Timeout":
            # Out of time means its whole tree is: what it called, still
            # running, would only hold agents for a result nobody will read.
            self.machine.cancel_tree({execution.id})
        failpoints.hit("put_result.before_commit")
        await self.batch.committed()
        failpoints.hit("put_result.after_commit")

    async def started(self, session: Session, ref: str) -> None:
        execution = self.index.owned(session, ref)
        if not execution.started:
            execution.started = True
            execution.started_at = self.clock.time()
            commit, dirty = session.provenance
            # Lost (to a crash or a power cut) before it is written, the start
            # is known again from the agent's heartbeats (I4): it acknowledges
            # nothing, and joins the next commit (the task's result's, for a
            # short task) instead of costing one of its own.
            self.batch.update_later(
                T_EXECUTION,
                execution.id,
                started_at=execution.started_at,
                git_commit=commit,
                git_dirty=dirty,
            )
            failpoints.hit("started.before_commit")

    async def put_logs(self, session: Session, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            execution = self.index.live_by_ref(str(message.get("execution_id")))
            if execution is None or execution.session_id != session.id:
                continue  # logs of an execution this agent no longer owns are dropped
            sequence = int(message["sequence"])
            if sequence <= execution.log_sequence:
                continue  # a re-sent batch
            execution.log_sequence = sequence
            self.batch.insert(
                T_LOG,
                {
                    "id": self.ids.new("log_messages"),
                    "execution_id": execution.id,
                    "sequence": sequence,
                    "timestamp": float(message["timestamp"]),
                    "level": str(message["level"]),
                    "template": message.get("template"),
                    "values": message.get("values") or {},
                },
            )
        await self.batch.committed()
