"""The orchestrator of one project: the only writer of its database.

API handlers and agent connections call its methods on the server's event
loop; each method changes the in-memory picture of live (not yet finished)
executions and stages rows in a :class:`~.batch.Batch`. Anything that tells
the outside world (an acknowledgement, an ``execute`` message, a waiting
caller's result) happens after the batch commits.

This is the façade the routes and the agent protocol call. The work is done
by its parts, each given the others it needs:

- ``ids.IdAllocator``: ids of new rows;
- ``environments.Environments``: names, bases, ancestry;
- ``manifests.Manifests``: registered targets and their code hashes;
- ``index.LiveIndex``: every in-memory map, rebuilt from the database by ``load``;
- ``reuse.ReuseRules``: cache, memo, defer and incremental re-run decisions;
- ``machine.ExecutionMachine``: making and ending steps and executions;
- ``dispatch.Dispatcher`` and ``sessions.AgentSessions``: agents and assignment;
- ``calls.RunningCalls``: what a running execution asks;
- ``imports.RunImports`` and ``assets.AssetRecords``: imported runs, assets;
- ``clock.Clock``: the time every rule reads (a test passes its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from ....errors import InvalidInput, NotFound
from ....records.names import (
    validate_repository_name,
    validate_target_name,
)
from ....records.references import ExecutionRef, StepRef, parse_execution_ref, run_of
from ....records.states import RUNNABLE_TYPES
from ....records.targets import check_arguments
from .. import failpoints, tables
from ..settings import Settings
from . import lookups, progress, queries
from .assets import AssetRecords
from .batch import Batch
from .calls import RunningCalls
from .clock import Clock
from .dispatch import Dispatcher
from .environments import Environments
from .ids import IdAllocator
from .imports import RunImports
from .index import LiveIndex
from .keys import references
from .machine import ExecutionMachine
from .manifests import Manifests
from .reuse import ReuseRules
from .sessions import AgentSessions
from .state import LiveExecution, Session
from .steps import live_step

__all__ = ["ProjectOrchestrator", "Session"]


class ProjectOrchestrator:
    def __init__(
        self,
        name: str,
        engine: Engine,
        settings: Settings,
        guard: Callable[[Connection], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.settings = settings
        self.clock = clock or Clock()
        self.batch = Batch(engine, list(tables.metadata.sorted_tables), guard)
        self.ids = IdAllocator()
        self.environments = Environments(name, self.batch, self.ids, self.clock)
        self.manifests = Manifests(engine, self.batch, self.ids, self.clock, self.environments)
        self.index = LiveIndex(engine, self.clock)
        self.rules = ReuseRules(name, engine, settings, self.clock, self.index, self.environments)
        self.dispatcher = Dispatcher(self.index, self.batch, self.clock)
        self.machine = ExecutionMachine(
            engine,
            self.batch,
            self.ids,
            self.clock,
            self.index,
            self.manifests,
            self.rules,
            self.dispatcher,
        )
        self.sessions = AgentSessions(
            self.index,
            self.batch,
            settings,
            self.clock,
            self.environments,
            self.dispatcher,
            self.machine,
        )
        self.calls = RunningCalls(
            engine,
            self.batch,
            self.ids,
            self.clock,
            self.index,
            self.manifests,
            self.rules,
            self.machine,
            self.dispatcher,
        )
        self.imports = RunImports(engine, self.batch, self.ids, self.index, self.environments)
        self.assets = AssetRecords(self.batch, self.ids, self.clock, self.index)
        self._sweeper: asyncio.Task[None] | None = None
        # The agent protocol's and the routes' calls, as the parts that answer them.
        self.connect = self.sessions.connect
        self.abandon = self.sessions.abandon
        self.close_sessions = self.sessions.close_sessions
        self.list_agents = self.sessions.list_agents
        self.disconnect = self.sessions.disconnect
        self.heartbeat = self.sessions.heartbeat
        self.schedule = self.calls.schedule
        self.get_result = self.calls.get_result
        self.follow = self.calls.follow
        self.record_dependencies = self.calls.record_dependencies
        self.checkpoint = self.calls.checkpoint
        self.suspend = self.calls.suspend
        self.put_result = self.calls.put_result
        self.started = self.calls.started
        self.put_logs = self.calls.put_logs
        self.known_result = self.index.known_result
        self.import_run = self.imports.import_run
        self.record_asset = self.assets.record_asset
        self.register = self.manifests.register
        self.code_hash = self.manifests.code_hash
        self.find_target = self.manifests.find_target
        self.environment_id = self.environments.id
        self.create_environment = self.environments.create
        self.update_environment = self.environments.update
        self.archive_environment = self.environments.archive
        self.list_environments = self.environments.visible
        self._ancestry = self.environments.ancestry

    # --- lifecycle -------------------------------------------------------------

    def load(self) -> None:
        """Read what survives a restart: environments, id counters, live executions."""
        with self.engine.connect() as c:
            self.environments.load(c)
            self.ids.load(c)
        self.index.rebuild(self.environments.ancestry, self.manifests.find_target)

    async def start(self) -> None:
        self.load()
        self._sweeper = asyncio.create_task(self.sessions.sweep())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        self.batch.close()

    # --- what the routes read ----------------------------------------------------

    @property
    def live(self) -> dict[int, LiveExecution]:
        return self.index.live

    @property
    def waiters(self) -> dict[int, list[Any]]:
        return self.index.waiters

    @property
    def environment_names(self) -> dict[int, str]:
        return self.environments.names

    # --- runs --------------------------------------------------------------------

    async def submit(
        self,
        environment: str,
        repository: str,
        target: str,
        arguments: list[dict[str, Any]],
        idempotency_key: str | None = None,
    ) -> str:
        environment_id = self.environments.id(environment)
        validate_repository_name(repository)
        validate_target_name(target)
        if idempotency_key is not None:
            existing = self.index.runs_by_key.get(idempotency_key)
            if existing is None:
                with self.engine.connect() as c:
                    existing = lookups.run_by_key(c, idempotency_key)
            if existing:
                await self.batch.committed()  # the first submission may still be staged
                return existing
        spec = self.manifests.find_target(environment_id, repository, target)
        if spec.type not in RUNNABLE_TYPES:
            raise InvalidInput(
                f"{repository}:{target} is a {spec.type}; only workflows and sensors start runs"
            )
        check_arguments(f"{repository}:{target}", spec.parameters, len(arguments))
        for ref in references(arguments):
            self.index.execution_id(ref)  # references must name known executions
        run_id = self.machine.new_run(environment_id, idempotency_key)
        if idempotency_key is not None:
            self.index.runs_by_key[idempotency_key] = run_id
        self.machine.new_step(run_id, 1, repository, spec, arguments, environment_id)
        failpoints.hit("submit.before_commit")
        await self.batch.committed()
        failpoints.hit("submit.after_commit")
        return run_id

    async def rerun(
        self,
        step: StepRef,
        environment: str,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> ExecutionRef:
        """A new execution of a step, in ``environment`` (the run's or a descendant's).

        It never reuses a result for itself (a re-run forces execution). Its
        calls reuse the run's earlier results where the target's code hash and
        arguments are unchanged (an incremental re-run), unless ``force``; they
        follow the usual cache rules either way. A request repeated with its
        ``idempotency_key`` answers the execution the first one made.
        """
        if idempotency_key is not None:
            known = self.index.reruns_by_key.get(idempotency_key)
            if known is None:
                with self.engine.connect() as c:
                    known = lookups.rerun_by_key(c, idempotency_key)
            if known is not None:
                return parse_execution_ref(known)
        environment_id = self.environments.id(environment)
        with self.engine.connect() as c:
            found = lookups.step_to_rerun(c, step)
        if found is None:
            raise NotFound(f"unknown run {step.run_id}; list runs with `coflux runs list`")
        run_environment_id, row, attempt = found
        if row is None:
            raise NotFound(f"unknown step {step}")
        self.environments.check_visible(step.run_id, run_environment_id, environment_id)
        live_attempts = [e.attempt for e in self.index.live.values() if e.step.id == row.id]
        execution = self.machine.new_execution(
            live_step(row._mapping),
            max([attempt, *live_attempts]) + 1,
            environment_id,
            incremental=not force,
            idempotency_key=idempotency_key,
        )
        if idempotency_key is not None:
            self.index.reruns_by_key[idempotency_key] = execution.ref
        await self.batch.committed()
        return step.execution(execution.attempt)

    async def cancel(
        self,
        target: str | StepRef,
        before: float | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Cancel a run (or a step) and every live execution it led to; return how many.

        With ``before`` (when the user asked, for a cancellation sent late from a
        queue) only executions made by then are cancelled: a repeated request, or
        one arriving after a colleague's re-run, never cancels what came later.
        A request repeated with its ``idempotency_key`` answers what the first did.
        """
        if idempotency_key is not None and idempotency_key in self.index.cancels_by_key:
            return self.index.cancels_by_key[idempotency_key]
        run_id = run_of(target)
        step_number = target.number if isinstance(target, StepRef) else None
        roots = [
            e
            for e in self.index.live.values()
            if e.step.run_id == run_id and (step_number is None or e.step.number == step_number)
        ]
        if not roots:
            with self.engine.connect() as c:
                if lookups.run_environment(c, run_id) is None:
                    raise NotFound(f"unknown run {run_id}")
        if before is not None and roots:
            with self.engine.connect() as c:
                early = queries.made_before(c, [e.id for e in roots], before)
            roots = [e for e in roots if e.id in early]
        cancelled = self.machine.cancel_tree({e.id for e in roots})
        await self.batch.committed()
        if idempotency_key is not None:
            self.index.remember_cancel(idempotency_key, cancelled)
        return cancelled

    async def wait_for_run(self, what: str | StepRef, timeout: float) -> bool:
        """Wait until the run (or one step of it) has finished; see ``progress``."""
        step = what.number if isinstance(what, StepRef) else None
        return await progress.wait_for_run(self, run_of(what), timeout, step)

    def view_of(self, run_id: str, environment: str, strict: bool) -> list[int]:
        """The environments whose executions ``environment`` sees of a run, nearest first.

        A run is seen from its own environment and from descendants of it; from
        anywhere else ``strict`` refuses, otherwise the run's own environment's view is given.
        """
        environment_id = self.environments.id(environment, archived=True)
        with self.engine.connect() as c:
            run_environment_id = lookups.run_environment(c, run_id)
        if run_environment_id is None:
            raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")
        ancestry = self.environments.ancestry(environment_id)
        if run_environment_id in ancestry:
            return ancestry
        if strict:
            self.environments.check_visible(run_id, run_environment_id, environment_id)
        return self.environments.ancestry(run_environment_id)
