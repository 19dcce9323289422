"""Importing runs made elsewhere: a union of immutable facts, never a merge of edits.

``coflux sync`` pushes the
runs a workspace made on its embedded server while the shared server was
unreachable, and seeds the embedded server with runs pulled from the shared
one. Run IDs are globally unique and steps, executions and results never
change once recorded, so an import adds what is missing and leaves what is
there: importing the same run twice changes nothing. Only finished executions
are imported (an unfinished one belongs to the server running it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Engine, Table, select

from ....cache import validate_key
from ....errors import Conflict, InvalidInput, NotFound
from ....records.references import parse_execution_ref, parse_reference
from ...schemas import RunExport
from ..tables import T_ASSET, T_DEPENDENCY, T_EXECUTION, T_LOG, T_RESULT, T_RUN, T_STEP
from .batch import Batch
from .environments import Environments
from .ids import IdAllocator
from .index import LiveIndex
from .renumber import renumber
from .steps import step_row


class RunImports:
    def __init__(
        self,
        engine: Engine,
        batch: Batch,
        ids: IdAllocator,
        index: LiveIndex,
        environments: Environments,
    ) -> None:
        self.engine = engine
        self.batch = batch
        self.ids = ids
        self.index = index
        self.environments = environments
        #: One import at a time, so two pushes of one run number what they add apart.
        self.lock = asyncio.Lock()

    async def import_run(self, facts: RunExport) -> dict[str, Any]:
        """Add what this server lacks of a run; return how much was new, and what
        was renumbered because the server had given its number to something else."""
        async with self.lock:
            return await self._import_run(facts)

    def _renumbered(self, facts: RunExport, run_id: str) -> tuple[RunExport, dict[str, str]]:
        with self.engine.connect() as c:
            created = c.execute(select(T_RUN.c.created_at).where(T_RUN.c.id == run_id)).scalar()
            if created is None:
                return facts, {}
            if created != facts.run.created_at:
                raise Conflict(
                    f"run {run_id} on the server is another run than the one pushed "
                    "(same ID, made at another time); it is not pushed"
                )
            steps = {
                row.number: (row.created_at, row.target)
                for row in c.execute(
                    select(T_STEP.c.number, T_STEP.c.created_at, T_STEP.c.target).where(
                        T_STEP.c.run_id == run_id
                    )
                )
            }
            executions = {
                (row.number, row.attempt): row.created_at
                for row in c.execute(
                    select(T_STEP.c.number, T_EXECUTION.c.attempt, T_EXECUTION.c.created_at)
                    .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
                    .where(T_STEP.c.run_id == run_id)
                )
            }
        busy: dict[int, set[int]] = {}
        for live in self.index.live.values():
            if live.step.run_id == run_id:
                busy.setdefault(live.step.number, set()).add(live.attempt)
        moved, renamed = renumber(
            facts.model_dump(), steps, executions, busy, self.index.step_counters.get(run_id, 0)
        )
        return (RunExport.model_validate(moved) if renamed else facts), renamed

    async def _import_run(self, facts: RunExport) -> dict[str, Any]:
        run_id = parse_reference(facts.run.id)
        if not isinstance(run_id, str):
            raise InvalidInput(f"invalid run ID {facts.run.id!r}")
        facts, renamed = self._renumbered(facts, run_id)
        environments = {
            name: self.environments.id(name, archived=True)
            for name in {facts.run.environment, *(e.environment for e in facts.executions)}
        }
        with self.engine.connect() as c:
            run = c.execute(select(T_RUN.c.id).where(T_RUN.c.id == run_id)).first()
            step_ids = {
                row.number: row.id
                for row in c.execute(
                    select(T_STEP.c.id, T_STEP.c.number).where(T_STEP.c.run_id == run_id)
                )
            }
            known = {
                (row.number, row.attempt)
                for row in c.execute(
                    select(T_STEP.c.number, T_EXECUTION.c.attempt)
                    .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
                    .where(T_STEP.c.run_id == run_id)
                )
            }
        # Rows are staged here and handed to the batch only once all of the run
        # checks out, so a refused import leaves nothing behind.
        staged: list[tuple[Table, dict[str, Any]]] = []

        def stage(table: Table, row: dict[str, Any]) -> None:
            staged.append((table, row))

        if run is None:
            stage(
                T_RUN,
                {
                    "id": run_id,
                    "environment_id": environments[facts.run.environment],
                    "idempotency_key": None,
                    "created_at": facts.run.created_at,
                },
            )
        # Ids first, so a step can name its parent among the executions imported with it.
        new_executions = {
            f"{run_id}:{e.step}:{e.attempt}": (e, self.ids.new("executions"))
            for e in facts.executions
            if e.result is not None and (e.step, e.attempt) not in known
        }
        imported = {ref: id for ref, (_, id) in new_executions.items()}

        def resolve(ref: str | None) -> int | None:
            if ref is None:
                return None
            if ref in imported:
                return imported[ref]
            try:
                parse_execution_ref(ref)
                return self.index.execution_id(ref)
            except (NotFound, InvalidInput):
                return None

        new_steps = 0
        for step in sorted(facts.steps, key=lambda s: s.number):
            if step.number in step_ids:
                continue
            parent = resolve(step.parent)
            if step.parent is not None and parent is None:
                raise InvalidInput(
                    f"step {run_id}:{step.number} was called by {step.parent}, "
                    "which this server doesn't have; push that run first"
                )
            step_ids[step.number] = self.ids.new("steps")
            new_steps += 1
            stage(T_STEP, step_row(step_ids[step.number], run_id, parent, dict(step)))
        for ref, (e, id) in new_executions.items():
            if e.step not in step_ids:
                raise InvalidInput(f"execution {ref} belongs to no step of the run")
            assert e.result is not None
            stage(
                T_EXECUTION,
                {
                    "id": id,
                    "step_id": step_ids[e.step],
                    "attempt": e.attempt,
                    "environment_id": environments[e.environment],
                    "created_at": e.created_at,
                    "execute_after": e.execute_after,
                    "arguments": e.arguments,
                    "checkpoint": e.checkpoint,
                    "assigned_at": e.assigned_at,
                    "started_at": e.started_at,
                    "incremental": e.incremental,
                    "idempotency_key": None,
                    "session_id": None,
                },
            )
            stage(
                T_RESULT,
                {
                    "execution_id": id,
                    "state": e.result.state,
                    "value": e.result.value,
                    "error": e.result.error,
                    "reused_from_id": resolve(e.result.reused_from),
                    "created_at": e.result.created_at,
                },
            )
        for dependency in facts.dependencies:
            if dependency.execution in imported:
                source = resolve(dependency.dependency)
                if source is not None:
                    stage(
                        T_DEPENDENCY,
                        {
                            "execution_id": imported[dependency.execution],
                            "dependency_id": source,
                            "created_at": facts.run.created_at,
                        },
                    )
        for entry in facts.logs:
            if entry.execution in imported:
                stage(
                    T_LOG,
                    {
                        "id": self.ids.new("log_messages"),
                        "execution_id": imported[entry.execution],
                        "sequence": entry.sequence,
                        "timestamp": entry.timestamp,
                        "level": entry.level,
                        "template": entry.template,
                        "values": entry.values,
                    },
                )
        for asset in facts.assets:
            if asset.execution in imported:
                stage(
                    T_ASSET,
                    {
                        "id": self.ids.new("assets"),
                        "ref": validate_key(asset.ref),
                        "execution_id": imported[asset.execution],
                        "path": asset.path,
                        "files": asset.files,
                        "size": asset.size,
                        "created_at": asset.created_at,
                    },
                )
        for table, row in staged:
            self.batch.insert(table, row)
        self.index.step_counters.pop(run_id, None)  # numbers above the imported ones come next
        await self.batch.committed()
        return {
            "id": run_id,
            "steps": new_steps,
            "executions": len(new_executions),
            "renumbered": renamed,
        }
