"""The orchestrator of one project: the only writer of its database.

API handlers and agent connections call its methods on the server's event
loop; each method changes the in-memory picture of live (not yet finished)
executions and stages rows in a :class:`~.batch.Batch`. Anything that tells
the outside world (an acknowledgement, an ``execute`` message, a waiting
caller's result) happens after the batch commits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from ....errors import Conflict, InvalidInput, NotFound
from ....records.names import (
    validate_environment_name,
    validate_repository_name,
    validate_target_name,
)
from ....records.references import new_run_id, parse_execution_ref
from ....records.states import RUNNABLE_TYPES, TRANSITIONS
from ....records.targets import RetryOptions, TargetSpec, check_arguments
from .. import failpoints, tables
from ..settings import Settings
from ..tables import (
    T_ASSET,
    T_DEPENDENCY,
    T_ENV,
    T_EXECUTION,
    T_LOG,
    T_MANIFEST,
    T_RESULT,
    T_RUN,
    T_STEP,
)
from . import progress, queries, restore
from .assets import AssetRecords
from .batch import Batch
from .imports import RunImports
from .keys import (
    cache_key,
    defer_key,
    memo_key,
    references,
    result_message,
    reuse_key,
    wait_indexes,
)
from .provenance import UNKNOWN, Provenance
from .reuse import ReuseRules
from .sessions import AgentSessions
from .state import (
    FINISHED_CACHE_SIZE,
    SENSOR_RESTART_INTERVAL,
    LiveExecution,
    LiveStep,
    ResultCallback,
    Session,
)

log = logging.getLogger("coflux.server")


class ProjectOrchestrator(AgentSessions, ReuseRules, RunImports, AssetRecords):
    def __init__(
        self,
        name: str,
        engine: Engine,
        settings: Settings,
        guard: Callable[[Connection], None] | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.settings = settings
        self.batch = Batch(engine, list(tables.metadata.sorted_tables), guard)
        self.environments: dict[str, int] = {}
        self.environment_names: dict[int, str] = {}
        self.environment_bases: dict[int, int | None] = {}
        self.archived: set[int] = set()
        self.live: dict[int, LiveExecution] = {}
        self.live_refs: dict[str, int] = {}
        self.queue: dict[int, None] = {}  # queued execution ids, oldest first
        #: For each live execution, the queued executions that wait for it to finish.
        self.held_by: dict[int, set[int]] = {}
        self.sessions: dict[str, Session] = {}
        self.waiters: dict[int, list[ResultCallback]] = {}
        #: Outcomes of recently finished executions, newest last: answers a
        #: wait without a query, including for outcomes staged but not yet committed.
        self.finished: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.finished_refs: OrderedDict[str, int] = OrderedDict()
        #: Retried executions and the attempt that replaced them.
        self.successors: dict[int, int] = {}
        #: Live executions by (environment, cache key), and those linked to each.
        self.pending_cache: dict[tuple[int, str], int] = {}
        self.links: dict[int, set[int]] = {}
        #: Recent successes by (environment, cache key): (execution, value, time).
        self.recent_cache: OrderedDict[tuple[int, str], tuple[int, dict[str, Any], float]] = (
            OrderedDict()
        )
        #: The newest not-yet-started execution by (environment, defer key).
        self.pending_defer: dict[tuple[int, str], int] = {}
        #: Memoised steps by (run, memo key): the reference of the step's first execution.
        self.memo_steps: dict[tuple[str, str], str] = {}
        #: Code hashes of registered targets by (environment, repository), read lazily.
        self.code_hashes: dict[tuple[int, str], dict[str, str | None]] = {}
        self._dispatch_timer: asyncio.TimerHandle | None = None
        self._next_ids: dict[str, int] = {}
        self.step_counters: dict[str, int] = {}
        #: Runs submitted with an idempotency key by this process (the rest are queried).
        self.runs_by_key: dict[str, str] = {}
        self.reruns_by_key: dict[str, str] = {}
        #: Cancellations by key: how many each cancelled (a restart relies on ``before``).
        self.cancels_by_key: OrderedDict[str, int] = OrderedDict()
        #: One import at a time, so two pushes of one run number what they add apart.
        self.import_lock = asyncio.Lock()
        self._dispatch_needed = False
        self.batch.before_flush = self._dispatch
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------

    def load(self) -> None:
        """Read what survives a restart: environments, id counters, live executions."""
        with self.engine.connect() as c:
            for row in c.execute(select(T_ENV)):
                self._remember_environment(row.id, row.name, row.base_id)
                if row.archived_at is not None:
                    self.archived.add(row.id)
            for table in (T_ENV, T_MANIFEST, T_STEP, T_EXECUTION, T_LOG, T_ASSET):
                self._next_ids[table.name] = (
                    c.execute(select(func.max(table.c.id))).scalar() or 0
                ) + 1
            rows = c.execute(
                select(T_EXECUTION, T_STEP)
                .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
                .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
                .where(T_RESULT.c.execution_id.is_(None))
                .order_by(T_EXECUTION.c.id)
            ).all()
        now = time.monotonic()
        for row in rows:
            m = row._mapping
            step = LiveStep(
                id=m["step_id"],
                run_id=m["run_id"],
                number=m["number"],
                repository=m["repository"],
                target=m["target"],
                type=m["type"],
                arguments=m[T_STEP.c.arguments],  # executions have an `arguments` too
                options=m["options"],
                parent_execution_id=m["parent_execution_id"],
                cache_key=m["cache_key"],
                memo_key=m["memo_key"],
                code_hash=m["code_hash"],
                reuse_key=m["reuse_key"],
            )
            execution = LiveExecution(
                m[T_EXECUTION.c.id], step, m["attempt"], m["environment_id"], restored=True
            )
            execution.incremental = m["incremental"]
            execution.execute_after = m["execute_after"]
            # Counting every earlier attempt as a retry errs on the side of
            # fewer attempts than allowed, never more.
            execution.retries_used = m["attempt"] - 1
            execution.arguments = m[T_EXECUTION.c.arguments]
            execution.checkpoint = m[T_EXECUTION.c.checkpoint]
            self._add_live(execution)
            session_id = m["session_id"]
            if m["assigned_at"] is not None and session_id:
                # Its agent may still be running it: give the agent the usual
                # timeout to reconnect and claim it.
                session = self.sessions.get(session_id)
                if session is None:
                    session = self.sessions[session_id] = Session(
                        session_id, execution.environment_id, set(), 0, None, now
                    )
                execution.state = "assigned"
                execution.session_id = session_id
                execution.assigned_at = now
                execution.started = m["started_at"] is not None
                session.executions.add(execution.id)
            else:
                self.queue[execution.id] = None

        if self.live:
            with self.engine.connect() as c:
                for row in c.execute(
                    select(T_DEPENDENCY).where(T_DEPENDENCY.c.execution_id.in_(list(self.live)))
                ):
                    self.live[row.execution_id].dependencies.add(row.dependency_id)
        restore.rebuild(self)

    async def start(self) -> None:
        self.load()
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        self.batch.close()

    def _new_id(self, table: str) -> int:
        value = self._next_ids[table]
        self._next_ids[table] = value + 1
        return value

    # --- environments ----------------------------------------------------------

    def _remember_environment(self, id: int, name: str, base_id: int | None) -> None:
        self.environments[name] = id
        self.environment_names[id] = name
        self.environment_bases[id] = base_id

    def environment_id(self, name: str, archived: bool = False) -> int:
        """The id of a named environment; an archived one only when ``archived``."""
        validate_environment_name(name)
        id = self.environments.get(name)
        if id is None:
            raise NotFound(
                f"unknown environment {name!r} in project {self.name!r}; "
                f"create it with `coflux envs create {name}`"
            )
        if id in self.archived and not archived:
            raise Conflict(f"environment {name!r} is archived")
        return id

    async def create_environment(self, name: str, base: str | None) -> dict[str, Any]:
        validate_environment_name(name)
        if name in self.environments:
            raise Conflict(f"environment {name!r} already exists in project {self.name!r}")
        base_id = self.environment_id(base) if base else None
        id = self._new_id("environments")
        self._remember_environment(id, name, base_id)
        self.batch.insert(
            T_ENV, {"id": id, "name": name, "base_id": base_id, "created_at": time.time()}
        )
        await self.batch.committed()
        return {"name": name, "base": base}

    async def update_environment(
        self, name: str, base: str | None = None, no_base: bool = False, new_name: str | None = None
    ) -> dict[str, Any]:
        """Rebase (``base``), unbase (``no_base``) or rename an environment; cycles are refused."""
        id = self.environment_id(name)
        if base is not None and no_base:
            raise InvalidInput("give either a base or no base, not both")
        changes: dict[str, Any] = {}
        if base is not None:
            base_id = self.environment_id(base)
            if id in self._ancestry(base_id):
                raise InvalidInput(
                    f"basing {name!r} on {base!r} would make a cycle "
                    f"({base!r} is based on {name!r})"
                )
            changes["base_id"] = base_id
        elif no_base:
            changes["base_id"] = None
        if new_name is not None and new_name != name:
            validate_environment_name(new_name)
            if new_name in self.environments:
                raise Conflict(f"environment {new_name!r} already exists in project {self.name!r}")
            changes["name"] = new_name
        if changes:
            del self.environments[name]
            self._remember_environment(
                id, changes.get("name", name), changes.get("base_id", self.environment_bases[id])
            )
            self.batch.update(T_ENV, id, **changes)
            await self.batch.committed()
        return self._describe_environment(id)

    async def archive_environment(self, name: str) -> dict[str, Any]:
        """Hide an environment: no new runs, agents or registrations; its runs stay readable."""
        id = self.environment_id(name)
        based = sorted(
            self.environment_names[other]
            for other, base in self.environment_bases.items()
            if base == id and other not in self.archived
        )
        if based:
            raise Conflict(
                f"environment {name!r} is the base of {', '.join(based)}; "
                "rebase or archive those first"
            )
        self.archived.add(id)
        self.batch.update(T_ENV, id, archived_at=time.time())
        await self.batch.committed()
        return self._describe_environment(id)

    def _describe_environment(self, id: int) -> dict[str, Any]:
        base = self.environment_bases[id]
        return {
            "name": self.environment_names[id],
            "base": self.environment_names[base] if base is not None else None,
        }

    def list_environments(self) -> list[dict[str, Any]]:
        return [
            self._describe_environment(id)
            for _, id in sorted(self.environments.items())
            if id not in self.archived
        ]

    # --- manifests -------------------------------------------------------------

    async def register(
        self,
        environment: str,
        repository: str,
        targets: list[dict[str, Any]],
        provenance: Provenance = UNKNOWN,
    ) -> None:
        environment_id = self.environment_id(environment)
        validate_repository_name(repository)
        specs = []
        for data in targets:
            try:
                spec = TargetSpec.from_dict(data)
            except (KeyError, TypeError, ValueError, InvalidInput) as e:
                raise InvalidInput(f"invalid target in manifest for {repository}: {e}") from None
            validate_target_name(spec.name)
            if spec.type not in ("workflow", "task", "sensor"):
                raise InvalidInput(
                    f"invalid target type {spec.type!r} for {repository}:{spec.name}"
                )
            specs.append(spec.to_dict())
        if self._manifest(environment_id, repository, provenance) == specs:
            return  # unchanged, from the same commit: registering again adds no row
        self.code_hashes[(environment_id, repository)] = {
            spec["name"]: spec.get("code_hash") for spec in specs
        }
        self.batch.insert(
            T_MANIFEST,
            {
                "id": self._new_id("manifests"),
                "environment_id": environment_id,
                "repository": repository,
                "targets": specs,
                "created_at": time.time(),
                "git_commit": provenance[0],
                "git_dirty": provenance[1],
            },
        )
        await self.batch.committed()

    def _manifest(
        self, environment_id: int, repository: str, provenance: Provenance | None = None
    ) -> list[dict[str, Any]] | None:
        """The latest manifest's targets (None if there is none, or if ``provenance``
        is given and the latest came from another commit)."""
        with self.engine.connect() as c:
            row = c.execute(
                select(T_MANIFEST.c.targets, T_MANIFEST.c.git_commit, T_MANIFEST.c.git_dirty)
                .where(T_MANIFEST.c.environment_id == environment_id)
                .where(T_MANIFEST.c.repository == repository)
                .order_by(T_MANIFEST.c.id.desc())
                .limit(1)
            ).first()
        if row is None or (provenance is not None and (row[1], row[2]) != provenance):
            return None
        return row[0]

    def code_hash(self, environment_id: int, repository: str, target: str) -> str | None:
        """The target's code hash as registered in the environment or its nearest ancestor."""
        for environment in self._ancestry(environment_id):
            hashes = self.code_hashes.get((environment, repository))
            if hashes is None:
                targets = self._manifest(environment, repository)
                hashes = {t["name"]: t.get("code_hash") for t in targets or ()}
                self.code_hashes[(environment, repository)] = hashes
            if target in hashes:
                return hashes[target]
        return None

    def find_target(self, environment_id: int, repository: str, target: str) -> TargetSpec:
        targets = self._manifest(environment_id, repository)
        environment = self.environment_names[environment_id]
        if targets is None:
            raise NotFound(
                f"repository {repository!r} is not registered in environment {environment!r}; "
                f"register it with `coflux register {repository}` or start an agent for it"
            )
        for data in targets:
            if data["name"] == target:
                return TargetSpec.from_dict(data)
        names = ", ".join(sorted(t["name"] for t in targets if t["type"] == "workflow")) or "none"
        raise NotFound(
            f"unknown target {repository}:{target} in environment {environment!r} "
            f"(its workflows: {names})"
        )

    # --- runs and steps --------------------------------------------------------

    def _add_live(self, execution: LiveExecution) -> None:
        self.live[execution.id] = execution
        self.live_refs[execution.ref] = execution.id

    def _new_step(
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
        now = time.time()
        code = self.code_hash(environment_id, repository, spec.name)
        step = LiveStep(
            id=self._new_id("steps"),
            run_id=run_id,
            number=number,
            repository=repository,
            target=spec.name,
            type=spec.type,
            arguments=arguments,
            options={**spec.options.to_dict(), "wait_indexes": wait_indexes(spec)},
            parent_execution_id=parent_execution_id,
            cache_key=cache_key(repository, spec, arguments, code),
            memo_key=memo_key(repository, spec, arguments),
            defer_key=defer_key(repository, spec, arguments),
            code_hash=code,
            reuse_key=reuse_key(repository, spec, code, arguments),
        )
        self.batch.insert(
            T_STEP,
            {
                "id": step.id,
                "run_id": run_id,
                "number": number,
                "parent_execution_id": parent_execution_id,
                "call_index": call_index,
                "repository": repository,
                "target": spec.name,
                "type": spec.type,
                "arguments": arguments,
                "options": step.options,
                "cache_key": step.cache_key,
                "memo_key": step.memo_key,
                "code_hash": step.code_hash,
                "reuse_key": step.reuse_key,
                "created_at": now,
            },
        )
        if step.memo_key is not None:
            # The run's first step with the key is its memo (as the database lookup finds).
            self.memo_steps.setdefault((run_id, step.memo_key), f"{run_id}:{number}:1")
        execution = self._new_execution(
            step, 1, environment_id, incremental=incremental, reused=reused
        )
        if step.defer_key is not None:
            self._defer_older(execution, step.defer_key)
        return execution

    def _new_execution(
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
        execution = LiveExecution(self._new_id("executions"), step, attempt, environment_id)
        execution.arguments = arguments
        execution.incremental = incremental
        delay = max(delay, float(step.options.get("delay") or 0))
        execution.execute_after = time.time() + delay if delay else None
        self.batch.insert(
            T_EXECUTION,
            {
                "id": execution.id,
                "step_id": step.id,
                "attempt": attempt,
                "environment_id": environment_id,
                "created_at": time.time(),
                "execute_after": execution.execute_after,
                "arguments": arguments,
                "incremental": incremental,
                "idempotency_key": idempotency_key,
            },
        )
        self._add_live(execution)
        wait = step.options.get("wait_indexes")
        if wait:
            for ref in references([step.arguments[i] for i in wait if i < len(step.arguments)]):
                dependency = self._execution_id(ref)
                if dependency in self.live:
                    execution.wait_for.add(dependency)
                    self.held_by.setdefault(dependency, set()).add(execution.id)
        for ref in references(step.arguments):
            self._record_dependency(execution, self._execution_id(ref))
        if reused is not None:
            self._finish(execution, "cached", value=reused[1], reused_from=reused[0])
            return execution
        if attempt == 1 and step.cache_key is not None and self._reuse_cached(execution):
            return execution
        if step.cache_key is not None:
            self.pending_cache[(environment_id, step.cache_key)] = execution.id
        self.queue[execution.id] = None
        self._request_dispatch()
        return execution

    def _record_dependency(self, execution: LiveExecution, dependency_id: int) -> None:
        if dependency_id in execution.dependencies:
            return
        execution.dependencies.add(dependency_id)
        execution_id = execution.id
        self.batch.insert(
            T_DEPENDENCY,
            {
                "execution_id": execution_id,
                "dependency_id": dependency_id,
                "created_at": time.time(),
            },
        )

    async def submit(
        self,
        environment: str,
        repository: str,
        target: str,
        arguments: list[dict[str, Any]],
        idempotency_key: str | None = None,
    ) -> str:
        environment_id = self.environment_id(environment)
        validate_repository_name(repository)
        validate_target_name(target)
        if idempotency_key is not None:
            existing = self.runs_by_key.get(idempotency_key) or self._run_by_key(idempotency_key)
            if existing:
                await self.batch.committed()  # the first submission may still be staged
                return existing
        spec = self.find_target(environment_id, repository, target)
        if spec.type not in RUNNABLE_TYPES:
            raise InvalidInput(
                f"{repository}:{target} is a {spec.type}; only workflows and sensors start runs"
            )
        check_arguments(f"{repository}:{target}", spec.parameters, len(arguments))
        for ref in references(arguments):
            self._execution_id(ref)  # references must name known executions
        run_id = self._new_run(environment_id, idempotency_key)
        if idempotency_key is not None:
            self.runs_by_key[idempotency_key] = run_id
        self._new_step(run_id, 1, repository, spec, arguments, environment_id)
        failpoints.hit("submit.before_commit")
        await self.batch.committed()
        failpoints.hit("submit.after_commit")
        return run_id

    def _new_run(self, environment_id: int, idempotency_key: str | None = None) -> str:
        run_id = new_run_id()
        self.batch.insert(
            T_RUN,
            {
                "id": run_id,
                "environment_id": environment_id,
                "idempotency_key": idempotency_key,
                "created_at": time.time(),
            },
        )
        return run_id

    def _run_by_key(self, key: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(select(T_RUN.c.id).where(T_RUN.c.idempotency_key == key)).scalar()

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
        parent = self._owned(session, parent_ref)
        validate_repository_name(repository)
        validate_target_name(spec.name)
        existing = self._step_by_call(parent, call_index)
        if existing is not None:
            return existing  # a re-sent request after a reconnect
        for ref in references(arguments):
            self._execution_id(ref)
        if spec.type == "workflow":
            run_id = self._new_run(parent.environment_id)
            self.step_counters[run_id] = 1
            execution = self._new_step(
                run_id, 1, repository, spec, arguments, parent.environment_id, parent.id, call_index
            )
            parent.calls[call_index] = execution.ref
            return execution.ref
        run_id = parent.step.run_id
        code = self.code_hash(parent.environment_id, repository, spec.name)
        memo = memo_key(repository, spec, arguments)
        if memo is not None:
            memoised = self._memo_hit(run_id, memo)
            # In an incremental re-run, changed code runs again even where the memo matches.
            if memoised is not None and (
                not parent.incremental or self._code_hash_of(memoised) == code
            ):
                parent.calls[call_index] = memoised
                return memoised
        reused = None
        if parent.incremental:
            # Unchanged code and arguments reuse the run's earlier result.
            key = reuse_key(repository, spec, code, arguments)
            reused = self._reusable(run_id, key, parent.environment_id) if key else None
        number = self._next_step_number(run_id)
        execution = self._new_step(
            run_id,
            number,
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

    def _latest(self, execution_id: int) -> int:
        """The newest attempt that replaced this execution (itself if none)."""
        while execution_id in self.successors:
            execution_id = self.successors[execution_id]
        return execution_id

    def _ref_of(self, execution_id: int) -> str:
        if execution_id in self.live:
            return self.live[execution_id].ref
        for ref, id in self.finished_refs.items():
            if id == execution_id:
                return ref
        with self.engine.connect() as c:
            row = c.execute(
                select(T_STEP.c.run_id, T_STEP.c.number, T_EXECUTION.c.attempt)
                .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
                .where(T_EXECUTION.c.id == execution_id)
            ).one()
        return f"{row.run_id}:{row.number}:{row.attempt}"

    def _code_hash_of(self, ref: str) -> str | None:
        """The code hash of the step an execution reference names."""
        execution_id = self._execution_id(ref)
        if execution_id in self.live:
            return self.live[execution_id].step.code_hash
        with self.engine.connect() as c:
            return c.execute(
                select(T_STEP.c.code_hash)
                .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
                .where(T_EXECUTION.c.id == execution_id)
            ).scalar()

    def _step_by_call(self, parent: LiveExecution, call_index: int) -> str | None:
        if call_index in parent.calls:
            return parent.calls[call_index]
        if not parent.restored:
            return None
        # Loaded after a server restart: earlier calls are only in the database,
        # made by this attempt or by the suspended ones it resumes.
        with self.engine.connect() as c:
            callers = restore.resumed_attempts(c, parent.step.id, parent.attempt)
            row = c.execute(
                select(T_STEP.c.run_id, T_STEP.c.number)
                .where(T_STEP.c.parent_execution_id.in_([parent.id, *callers]))
                .where(T_STEP.c.call_index == call_index)
            ).first()
        return f"{row.run_id}:{row.number}:1" if row else None

    def _next_step_number(self, run_id: str) -> int:
        if run_id not in self.step_counters:
            with self.engine.connect() as c:
                self.step_counters[run_id] = (
                    c.execute(
                        select(func.max(T_STEP.c.number)).where(T_STEP.c.run_id == run_id)
                    ).scalar()
                    or 0
                )
        self.step_counters[run_id] += 1
        return self.step_counters[run_id]

    # --- executions ------------------------------------------------------------

    def _execution_id(self, ref: str) -> int:
        if ref in self.live_refs:
            return self.live_refs[ref]
        if ref in self.finished_refs:
            return self.finished_refs[ref]
        parsed = parse_execution_ref(ref)
        with self.engine.connect() as c:
            id = c.execute(
                select(T_EXECUTION.c.id)
                .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
                .where(T_STEP.c.run_id == parsed.run_id)
                .where(T_STEP.c.number == parsed.step)
                .where(T_EXECUTION.c.attempt == parsed.attempt)
            ).scalar()
        if id is None:
            raise NotFound(f"unknown execution {ref}")
        return id

    def _owned(self, session: Session, ref: str) -> LiveExecution:
        id = self.live_refs.get(ref)
        execution = self.live.get(id) if id is not None else None
        if execution is None or execution.session_id != session.id:
            raise NotFound(f"execution {ref} is not running on this agent")
        return execution

    def known_result(self, ref: str) -> dict[str, Any] | None:
        """The outcome of an execution that has finished recently, without a query."""
        id = self.finished_refs.get(ref)
        if id is None or id in self.successors:
            return None
        return self.finished.get(id)

    def _stored_result(self, execution_id: int) -> dict[str, Any] | None:
        if execution_id in self.finished:
            return self.finished[execution_id]
        with self.engine.connect() as c:
            row = c.execute(select(T_RESULT).where(T_RESULT.c.execution_id == execution_id)).first()
        if row is None:
            return None
        return result_message(row.state, row.value, row.error)

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
        id = self._latest(self._execution_id(execution_ref))
        waiting = self._owned(session, waiting_ref) if session and waiting_ref else None
        if waiting is not None:
            self._record_dependency(waiting, id)
        if id not in self.live:
            result = self._stored_result(id)
            # After a restart the in-memory successors are gone: what replaced
            # it, if anything, is the outcome that counts.
            id, result = restore.follow_replaced(self, id, result)
            if result is not None:
                self.batch.after_commit(lambda: callback(result))
                return
        if waiting is not None and session is not None:
            session.waiting[waiting.id] = session.waiting.get(waiting.id, 0) + 1
            self._request_dispatch()

            def resume(result: dict[str, Any], session: Session = session) -> None:
                count = session.waiting.get(waiting.id, 0) - 1
                if count > 0:
                    session.waiting[waiting.id] = count
                else:
                    session.waiting.pop(waiting.id, None)
                callback(result)

            self.waiters.setdefault(id, []).append(resume)
        else:
            self.waiters.setdefault(id, []).append(callback)

    def follow(self, ref: str, callback: ResultCallback) -> None:
        """Call ``callback`` with the step's final outcome when this live execution
        (or the attempt that replaces it) ends; nothing for one not live. Unlike
        ``get_result``, nobody is recorded as waiting: the caller may never read it."""
        id = self.live_refs.get(ref)
        if id is not None and id in self.live:
            self.waiters.setdefault(id, []).append(callback)

    def record_dependencies(self, session: Session, pairs: list[tuple[str, str]]) -> None:
        """Executions of this session read these steps' outcomes (sent by ``follow``)."""
        for waiting_ref, target_ref in pairs:
            try:
                waiting = self._owned(session, waiting_ref)
                target = self._latest(self._execution_id(target_ref))
            except (NotFound, InvalidInput):
                continue  # ended meanwhile, or a reference that names nothing
            self._record_dependency(waiting, target)

    def _later_attempt(self, execution_id: int) -> int | None:
        """The newest attempt of the same step, when newer than this execution."""
        newer = T_EXECUTION.alias("newer")
        with self.engine.connect() as c:
            return c.execute(
                select(newer.c.id)
                .join(T_EXECUTION, T_EXECUTION.c.step_id == newer.c.step_id)
                .where(T_EXECUTION.c.id == execution_id, newer.c.attempt > T_EXECUTION.c.attempt)
                .order_by(newer.c.attempt.desc())
                .limit(1)
            ).scalar()

    def _finish(
        self,
        execution: LiveExecution,
        state: str,
        value: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        reused_from: int | None = None,
        successor: LiveExecution | None = None,
    ) -> bool:
        """Record the one outcome of a live execution and tell whoever waits.

        The only place an execution ends: transitions are checked here
        (docs/state-machine.md), and an invalid one is logged, never stored.
        When something takes its place (a retry of a failure the step allows,
        the next attempt of a suspended execution, the newer call that
        deferred it), that ``successor`` inherits everyone waiting.
        """
        if state not in TRANSITIONS.get(execution.state, ()):
            log.error(
                "refused transition of %s from %s to %s", execution.ref, execution.state, state
            )
            return False
        self.live.pop(execution.id, None)
        self.live_refs.pop(execution.ref, None)
        self.queue.pop(execution.id, None)
        step = execution.step
        if step.cache_key is not None:
            key = (execution.environment_id, step.cache_key)
            if self.pending_cache.get(key) == execution.id:
                del self.pending_cache[key]
        session = self.sessions.get(execution.session_id or "")
        if session is not None:
            session.executions.discard(execution.id)
            session.waiting.pop(execution.id, None)
        now = time.time()
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
        message = result_message(state, value, error)
        self.finished[execution.id] = message
        self.finished_refs[execution.ref] = execution.id
        if len(self.finished) > FINISHED_CACHE_SIZE:
            self.finished.popitem(last=False)
            self.finished_refs.popitem(last=False)
        if execution.linked_to is not None:
            self.links.get(execution.linked_to, set()).discard(execution.id)

        retries = RetryOptions(**(step.options.get("retries") or {}))
        if successor is None and step.type == "sensor" and state not in ("cancelled", "deferred"):
            # The orchestrator keeps a started sensor running, from its last checkpoint,
            # at most once per SENSOR_RESTART_INTERVAL.
            started = execution.started_at or now
            delay = max(0.0, started + SENSOR_RESTART_INTERVAL - now)
            successor = self._next_attempt(
                execution, delay, arguments=execution.checkpoint or execution.arguments
            )
        if (
            successor is None
            and state in ("failed", "abandoned")
            and execution.retries_used < retries.limit
        ):
            successor = self._next_attempt(execution, retries.delay(execution.retries_used + 1))
            successor.retries_used = execution.retries_used + 1
        if successor is not None:
            self.successors[execution.id] = successor.id
            self._hand_over(execution.id, successor.id)
        else:
            for callback in self.waiters.pop(execution.id, []):
                self.batch.after_commit(functools.partial(callback, message))
            for held in self.held_by.pop(execution.id, ()):
                if held in self.live:
                    self.live[held].wait_for.discard(execution.id)
            self._release_links(execution, state, value, now, reused_from or execution.id)
        self._request_dispatch()
        return True

    def _next_attempt(
        self,
        execution: LiveExecution,
        delay: float,
        wait_for: set[int] | None = None,
        arguments: list[dict[str, Any]] | None = None,
    ) -> LiveExecution:
        """A new execution of the same step: a retry, a resumption, a sensor's restart."""
        attempt = self._new_execution(
            execution.step,
            execution.attempt + 1,
            execution.environment_id,
            delay,
            arguments,
            incremental=execution.incremental,
        )
        attempt.retries_used = execution.retries_used
        for dependency in wait_for or ():
            if dependency in self.live:
                attempt.wait_for.add(dependency)
                self.held_by.setdefault(dependency, set()).add(attempt.id)
        return attempt

    def _hand_over(self, old: int, new: int) -> None:
        """Whoever waited for (or was linked to) ``old`` now waits for ``new``."""
        if old in self.waiters:
            self.waiters.setdefault(new, []).extend(self.waiters.pop(old))
        for held in self.held_by.pop(old, ()):
            if held in self.live:
                self.live[held].wait_for.discard(old)
                self.live[held].wait_for.add(new)
                self.held_by.setdefault(new, set()).add(held)
        for linked in self.links.pop(old, ()):
            if linked in self.live:
                self.live[linked].linked_to = new
                self.links.setdefault(new, set()).add(linked)

    async def checkpoint(self, session: Session, ref: str, arguments: list[dict[str, Any]]) -> None:
        """A sensor records where it got to; a restart begins from here."""
        execution = self._owned(session, ref)
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
        execution = self._owned(session, ref)
        dependencies = {self._latest(self._execution_id(r)) for r in wait_for}
        delay = max(0.0, until - time.time()) if until is not None else 0.0
        successor = self._next_attempt(execution, delay, dependencies)
        successor.calls = dict(execution.calls)
        # Calls of a restored execution are in the database only: look there.
        successor.restored = execution.restored
        for dependency in dependencies:
            # Stored, so that after a restart the next attempt waits again.
            self._record_dependency(successor, dependency)
        self._finish(execution, "suspended", successor=successor)
        await self.batch.committed()

    async def put_result(
        self, session: Session, ref: str, value: dict[str, Any] | None, error: dict[str, Any] | None
    ) -> None:
        """An agent reports an outcome; a re-sent identical report is acknowledged (I1)."""
        id = self.live_refs.get(ref)
        execution = self.live.get(id) if id is not None else None
        if execution is None:
            stored = self._stored_result(self._execution_id(ref))
            if stored is None:
                raise NotFound(f"execution {ref} is not running on this agent")
            if stored == result_message("failed" if error else "succeeded", value, error):
                return  # already recorded, same outcome: acknowledge again
            raise Conflict(f"execution {ref} already has a different outcome ({stored['state']})")
        if execution.session_id != session.id:
            raise NotFound(f"execution {ref} is not running on this agent")
        self._finish(execution, "failed" if error else "succeeded", value, error)
        if error is not None and error.get("type") == "coflux.Timeout":
            # Out of time means its whole tree is: what it called, still
            # running, would only hold agents for a result nobody will read.
            self._cancel_tree({execution.id})
        failpoints.hit("put_result.before_commit")
        await self.batch.committed()
        failpoints.hit("put_result.after_commit")

    async def started(self, session: Session, ref: str) -> None:
        execution = self._owned(session, ref)
        if not execution.started:
            execution.started = True
            execution.started_at = time.time()
            commit, dirty = session.provenance
            self.batch.update(
                T_EXECUTION,
                execution.id,
                started_at=execution.started_at,
                git_commit=commit,
                git_dirty=dirty,
            )
        # Lost to a power cut, the start is known again from the agent's
        # heartbeats (I4): this acknowledgement needn't wait for the disk.
        await self.batch.committed(durable=False)

    async def put_logs(self, session: Session, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            id = self.live_refs.get(str(message.get("execution_id")))
            execution = self.live.get(id) if id is not None else None
            if execution is None or execution.session_id != session.id:
                continue  # logs of an execution this agent no longer owns are dropped
            sequence = int(message["sequence"])
            if sequence <= execution.log_sequence:
                continue  # a re-sent batch
            execution.log_sequence = sequence
            self.batch.insert(
                T_LOG,
                {
                    "id": self._new_id("log_messages"),
                    "execution_id": execution.id,
                    "sequence": sequence,
                    "timestamp": float(message["timestamp"]),
                    "level": str(message["level"]),
                    "template": message.get("template"),
                    "values": message.get("values") or {},
                },
            )
        await self.batch.committed()

    async def rerun(
        self,
        run_id: str,
        step_number: int,
        environment: str,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> str:
        """A new execution of a step, in ``environment`` (the run's or a descendant's).

        It never reuses a result for itself (a re-run forces execution). Its
        calls reuse the run's earlier results where the target's code hash and
        arguments are unchanged (an incremental re-run), unless ``force``; they
        follow the usual cache rules either way. A request repeated with its
        ``idempotency_key`` answers the execution the first one made.
        """
        if idempotency_key is not None:
            known = self.reruns_by_key.get(idempotency_key) or self._rerun_by_key(idempotency_key)
            if known is not None:
                return known
        environment_id = self.environment_id(environment)
        with self.engine.connect() as c:
            run = c.execute(select(T_RUN).where(T_RUN.c.id == run_id)).first()
            if run is None:
                raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")
            row = c.execute(
                select(T_STEP).where(T_STEP.c.run_id == run_id, T_STEP.c.number == step_number)
            ).first()
            if row is None:
                raise NotFound(f"unknown step {run_id}:{step_number}")
            attempt = c.execute(
                select(func.max(T_EXECUTION.c.attempt)).where(T_EXECUTION.c.step_id == row.id)
            ).scalar()
        self._check_visible(run_id, run.environment_id, environment_id)
        live_attempts = [e.attempt for e in self.live.values() if e.step.id == row.id]
        step = LiveStep(
            id=row.id,
            run_id=run_id,
            number=step_number,
            repository=row.repository,
            target=row.target,
            type=row.type,
            arguments=row.arguments,
            options=row.options,
            parent_execution_id=row.parent_execution_id,
            cache_key=row.cache_key,
            memo_key=row.memo_key,
            code_hash=row.code_hash,
            reuse_key=row.reuse_key,
        )
        execution = self._new_execution(
            step,
            max([attempt or 0, *live_attempts]) + 1,
            environment_id,
            incremental=not force,
            idempotency_key=idempotency_key,
        )
        if idempotency_key is not None:
            self.reruns_by_key[idempotency_key] = execution.ref
        await self.batch.committed()
        return execution.ref

    async def cancel(
        self,
        run_id: str,
        step_number: int | None = None,
        before: float | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Cancel a run (or a step) and every live execution it led to; return how many.

        With ``before`` (when the user asked, for a cancellation sent late from a
        queue) only executions made by then are cancelled: a repeated request, or
        one arriving after a colleague's re-run, never cancels what came later.
        A request repeated with its ``idempotency_key`` answers what the first did.
        """
        if idempotency_key is not None and idempotency_key in self.cancels_by_key:
            return self.cancels_by_key[idempotency_key]
        roots = [
            e
            for e in self.live.values()
            if e.step.run_id == run_id and (step_number is None or e.step.number == step_number)
        ]
        if not roots and not self._run_exists(run_id):
            raise NotFound(f"unknown run {run_id}")
        if before is not None and roots:
            with self.engine.connect() as c:
                early = queries.made_before(c, [e.id for e in roots], before)
            roots = [e for e in roots if e.id in early]
        cancelled = self._cancel_tree({e.id for e in roots})
        await self.batch.committed()
        if idempotency_key is not None:
            self.cancels_by_key[idempotency_key] = cancelled
            while len(self.cancels_by_key) > 10000:
                self.cancels_by_key.popitem(last=False)
        return cancelled

    def _cancel_tree(self, roots: set[int]) -> int:
        """Cancel the live executions among ``roots`` and every live execution
        they led to (executions of steps they called); return how many."""
        tree = set(roots)
        changed = True
        while changed:  # descendants: executions of steps called by one in the tree
            changed = False
            for e in self.live.values():
                if e.id not in tree and e.step.parent_execution_id in tree:
                    tree.add(e.id)
                    changed = True
        cancelled = [self.live[id] for id in tree if id in self.live]
        for execution in cancelled:
            session = self.sessions.get(execution.session_id or "")
            if session is not None and session.send is not None:
                send, ref = session.send, execution.ref
                self.batch.after_commit(
                    functools.partial(send, {"method": "abort", "params": {"execution_id": ref}})
                )
            self._finish(execution, "cancelled")
        return len(cancelled)

    async def wait_for_run(self, run_id: str, timeout: float, step: int | None = None) -> bool:
        """Wait until the run (or one step of it) has finished; see ``progress``."""
        return await progress.wait_for_run(self, run_id, timeout, step)

    def _rerun_by_key(self, key: str) -> str | None:
        with self.engine.connect() as c:
            row = c.execute(
                select(T_STEP.c.run_id, T_STEP.c.number, T_EXECUTION.c.attempt)
                .join(T_STEP, T_STEP.c.id == T_EXECUTION.c.step_id)
                .where(T_EXECUTION.c.idempotency_key == key)
            ).first()
        return f"{row.run_id}:{row.number}:{row.attempt}" if row else None

    def _check_visible(self, run_id: str, run_environment_id: int, environment_id: int) -> None:
        if run_environment_id not in self._ancestry(environment_id):
            raise InvalidInput(
                f"run {run_id} is in environment {self.environment_names[run_environment_id]!r}, "
                f"which is not {self.environment_names[environment_id]!r} or one of its bases"
            )

    def view_of(self, run_id: str, environment: str, strict: bool) -> list[int]:
        """The environments whose executions ``environment`` sees of a run, nearest first.

        A run is seen from its own environment and from descendants of it; from
        anywhere else ``strict`` refuses, otherwise the run's own environment's view is given.
        """
        environment_id = self.environment_id(environment, archived=True)
        with self.engine.connect() as c:
            run_environment_id = c.execute(
                select(T_RUN.c.environment_id).where(T_RUN.c.id == run_id)
            ).scalar()
        if run_environment_id is None:
            raise NotFound(f"unknown run {run_id}; list runs with `coflux runs list`")
        ancestry = self._ancestry(environment_id)
        if run_environment_id in ancestry:
            return ancestry
        if strict:
            self._check_visible(run_id, run_environment_id, environment_id)
        return self._ancestry(run_environment_id)

    def _run_exists(self, run_id: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(select(T_RUN.c.id).where(T_RUN.c.id == run_id)).first() is not None
