"""The execution state machine: steps and executions are made, and end, here only.

Each change updates the live index and stages rows in the batch; whoever is
told about it (a waiting caller, an agent to abort) is told after the batch
commits. ``finish`` is the one place an execution ends: transitions are
checked there (docs/state-machine.md), and what takes an ended execution's
place (a retry, a resumption, a sensor's restart, the newer call that
deferred it) inherits everyone waiting for it. The reuse rules decide when a
step refers to an existing result; this carries out what they decide.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from sqlalchemy import Engine

from ....records.references import new_run_id
from ....records.states import TRANSITIONS
from ....records.targets import RetryOptions, TargetSpec
from ..tables import T_DEPENDENCY, T_EXECUTION, T_LOG, T_RESULT, T_RUN, T_STEP
from . import lookups
from .batch import Batch, JSONText
from .clock import Clock
from .dispatch import Dispatcher
from .ids import IdAllocator
from .index import LiveIndex
from .keys import (
    cache_key,
    defer_key,
    memo_key,
    references,
    result_message,
    reuse_key,
    wait_indexes,
)
from .manifests import Manifests
from .reuse import ReuseRules
from .state import SENSOR_RESTART_INTERVAL, LiveExecution, LiveStep
from .steps import live_row

log = logging.getLogger("coflux.server")

#: The most targets whose step options are kept made (see ``_options``).
OPTIONS_REMEMBERED = 1000


class ExecutionMachine:
    def __init__(
        self,
        engine: Engine,
        batch: Batch,
        ids: IdAllocator,
        clock: Clock,
        index: LiveIndex,
        manifests: Manifests,
        rules: ReuseRules,
        dispatcher: Dispatcher,
    ) -> None:
        self.engine = engine
        self.batch = batch
        self.ids = ids
        self.clock = clock
        self.index = index
        self.manifests = manifests
        self.rules = rules
        self.dispatcher = dispatcher
        #: A spec's step options and their JSON text, by the spec's identity
        #: (the spec kept alive with them, so an id is never reused).
        self._options_by_spec: dict[int, tuple[TargetSpec, dict[str, Any], JSONText]] = {}

    def _options(self, spec: TargetSpec) -> tuple[dict[str, Any], JSONText]:
        """The options a step of ``spec`` holds, and their text for its row: made
        once per spec, since an agent's connection keeps each spec it parsed (a
        fan-out's thousand steps share one). Never changed once made."""
        known = self._options_by_spec.get(id(spec))
        if known is None:
            options = {**spec.options.to_dict(), "wait_indexes": wait_indexes(spec)}
            if len(self._options_by_spec) >= OPTIONS_REMEMBERED:
                self._options_by_spec.clear()
            known = self._options_by_spec[id(spec)] = (spec, options, JSONText(json.dumps(options)))
        return known[1], known[2]

    # --- making runs, steps and executions -------------------------------------

    def new_run(self, environment_id: int, idempotency_key: str | None = None) -> str:
        run_id = new_run_id()
        self.batch.insert(
            T_RUN,
            {
                "id": run_id,
                "environment_id": environment_id,
                "idempotency_key": idempotency_key,
                "created_at": self.clock.time(),
            },
        )
        return run_id

    def next_step_number(self, run_id: str) -> int:
        counters = self.index.step_counters
        if run_id not in counters:
            with self.engine.connect() as c:
                counters[run_id] = lookups.last_step_number(c, run_id)
        counters[run_id] += 1
        return counters[run_id]

    def new_step(
        self,
        run_id: str,
        number: int,
        repository: str,
        spec: TargetSpec,
        arguments: list[dict[str, Any]],
        environment_id: int,
        parent_execution_id: int | None = None,
        call_index: int | None = None,
        incremental: bool = False,
        reused: tuple[int, dict[str, Any]] | None = None,
    ) -> LiveExecution:
        """A new step and its first execution; ``reused`` finishes it at once as
        ``cached`` with that (source execution, value)."""
        code = self.manifests.code_hash(environment_id, repository, spec.name)
        options, options_text = self._options(spec)
        step = LiveStep(
            id=self.ids.new("steps"),
            run_id=run_id,
            number=number,
            repository=repository,
            target=spec.name,
            type=spec.type,
            arguments=arguments,
            options=options,
            parent_execution_id=parent_execution_id,
            cache_key=cache_key(repository, spec, arguments, code),
            memo_key=memo_key(repository, spec, arguments),
            defer_key=defer_key(repository, spec, arguments),
            code_hash=code,
            reuse_key=reuse_key(repository, spec, code, arguments),
        )
        row = live_row(step, call_index, self.clock.time())
        row["options"] = options_text
        self.batch.insert(T_STEP, row)
        if step.memo_key is not None:
            self.rules.memoised(run_id, step.memo_key, number)
        execution = self.new_execution(
            step, 1, environment_id, incremental=incremental, reused=reused
        )
        if step.defer_key is not None:
            older = self.rules.deferred_by(execution, step.defer_key)
            if older is not None:
                self.finish(older, "deferred", successor=execution)
                # Stored (as what it waits for), so a restart still follows it there.
                self.record_dependency(older, execution.id)
        return execution

    def new_execution(
        self,
        step: LiveStep,
        attempt: int,
        environment_id: int,
        delay: float = 0.0,
        arguments: list[dict[str, Any]] | None = None,
        incremental: bool = False,
        reused: tuple[int, dict[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> LiveExecution:
        execution = LiveExecution(self.ids.new("executions"), step, attempt, environment_id)
        execution.arguments = arguments
        execution.incremental = incremental
        delay = max(delay, float(step.options.get("delay") or 0))
        now = self.clock.time()
        execution.execute_after = now + delay if delay else None
        self.batch.insert(
            T_EXECUTION,
            {
                "id": execution.id,
                "step_id": step.id,
                "attempt": attempt,
                "environment_id": environment_id,
                "created_at": now,
                "execute_after": execution.execute_after,
                "arguments": arguments,
                "incremental": incremental,
                "idempotency_key": idempotency_key,
            },
        )
        self.index.add(execution)
        wait = step.options.get("wait_indexes")
        if wait:
            for ref in references([step.arguments[i] for i in wait if i < len(step.arguments)]):
                dependency = self.index.execution_id(ref)
                if dependency in self.index.live:
                    self.index.hold(execution, dependency)
        for ref in references(step.arguments):
            self.record_dependency(execution, self.index.execution_id(ref))
        if reused is not None:
            self.finish(execution, "cached", value=reused[1], reused_from=reused[0])
            return execution
        if attempt == 1 and step.cache_key is not None:
            found = self.rules.look_up_cache(execution)
            if found.linked:
                return execution
            if found.hit is not None:
                self.finish(execution, "cached", value=found.hit[1], reused_from=found.hit[0])
                return execution
            if found.warning is not None:
                self.server_warning(execution, found.warning)
        self.rules.pending(execution)
        self.index.queue[execution.id] = None
        self.dispatcher.request()
        return execution

    def next_attempt(
        self,
        execution: LiveExecution,
        delay: float,
        wait_for: set[int] | None = None,
        arguments: list[dict[str, Any]] | None = None,
    ) -> LiveExecution:
        """A new execution of the same step: a retry, a resumption, a sensor's restart."""
        attempt = self.new_execution(
            execution.step,
            execution.attempt + 1,
            execution.environment_id,
            delay,
            arguments,
            incremental=execution.incremental,
        )
        attempt.retries_used = execution.retries_used
        for dependency in wait_for or ():
            if dependency in self.index.live:
                self.index.hold(attempt, dependency)
        return attempt

    def record_dependency(self, execution: LiveExecution, dependency_id: int) -> None:
        if dependency_id in execution.dependencies:
            return
        execution.dependencies.add(dependency_id)
        self.batch.insert(
            T_DEPENDENCY,
            {
                "execution_id": execution.id,
                "dependency_id": dependency_id,
                "created_at": self.clock.time(),
            },
        )

    def server_warning(self, execution: LiveExecution, message: str) -> None:
        """A warning in the execution's log, from the server: sequence 0, before
        any of its agent's messages (which start at 1)."""
        self.batch.insert(
            T_LOG,
            {
                "id": self.ids.new("log_messages"),
                "execution_id": execution.id,
                "sequence": 0,
                "timestamp": self.clock.time(),
                "level": "warning",
                "template": message,
                "values": {},
            },
        )

    # --- ending executions -----------------------------------------------------

    def finish(
        self,
        execution: LiveExecution,
        state: str,
        value: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        reused_from: int | None = None,
        successor: LiveExecution | None = None,
    ) -> bool:
        """Record the one outcome of a live execution and tell whoever waits.

        An invalid transition is logged, never stored. When something takes its
        place (a retry of a failure the step allows, the next attempt of a
        suspended execution, the newer call that deferred it), that
        ``successor`` inherits everyone waiting.
        """
        if state not in TRANSITIONS.get(execution.state, ()):
            log.error(
                "refused transition of %s from %s to %s", execution.ref, execution.state, state
            )
            return False
        index = self.index
        message = result_message(state, value, error)
        index.remove(execution, message)
        self.rules.ended(execution)
        session = index.sessions.get(execution.session_id or "")
        if session is not None:
            session.executions.discard(execution.id)
            session.waiting.pop(execution.id, None)
        now = self.clock.time()
        self.batch.insert(
            T_RESULT,
            {
                "execution_id": execution.id,
                "state": state,
                "value": value,
                "error": error,
                "reused_from_id": reused_from,
                "created_at": now,
            },
        )
        step = execution.step
        retries = RetryOptions(**(step.options.get("retries") or {}))
        if successor is None and step.type == "sensor" and state not in ("cancelled", "deferred"):
            # The orchestrator keeps a started sensor running, from its last checkpoint,
            # at most once per SENSOR_RESTART_INTERVAL.
            started = execution.started_at or now
            delay = max(0.0, started + SENSOR_RESTART_INTERVAL - now)
            successor = self.next_attempt(
                execution, delay, arguments=execution.checkpoint or execution.arguments
            )
        if (
            successor is None
            and state in ("failed", "abandoned")
            and execution.retries_used < retries.limit
        ):
            successor = self.next_attempt(execution, retries.delay(execution.retries_used + 1))
            successor.retries_used = execution.retries_used + 1
        if successor is not None:
            index.hand_over(execution.id, successor.id)
        else:
            for callback in index.waiters.pop(execution.id, []):
                self.batch.after_commit(functools.partial(callback, message))
            index.release_held(execution.id)
            origin = reused_from or execution.id
            for linked in self.rules.release_links(execution, state, value, now, origin):
                self.finish(linked, "cached", value=value, reused_from=origin)
        self.dispatcher.request()
        return True

    def cancel_tree(self, roots: set[int]) -> int:
        """Cancel the live executions among ``roots`` and every live execution
        they led to (executions of steps they called); return how many."""
        live = self.index.live
        tree = set(roots)
        changed = True
        while changed:  # descendants: executions of steps called by one in the tree
            changed = False
            for e in live.values():
                if e.id not in tree and e.step.parent_execution_id in tree:
                    tree.add(e.id)
                    changed = True
        cancelled = [live[id] for id in tree if id in live]
        for execution in cancelled:
            session = self.index.sessions.get(execution.session_id or "")
            if session is not None and session.send is not None:
                send, ref = session.send, execution.ref
                self.batch.after_commit(
                    functools.partial(send, {"method": "abort", "params": {"execution_id": ref}})
                )
            self.finish(execution, "cancelled")
        return len(cancelled)
