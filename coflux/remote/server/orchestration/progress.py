"""When a run has finished: once every step of it has, not only its first.

A workflow may submit tasks and return without waiting for them; those steps
are part of its run. So a run is ``running`` while any of its steps has an
unfinished execution (queued or assigned: an execution without a result),
and only then takes its state from its initial step, whose outcome stays
the run's result. Long polls (``GET .../runs/RUN/wait``, hence ``coflux run``
and ``submit --wait``) wait for the same moment, so the embedded server
completes everything a run started before its command exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from ....records.states import RunState, run_state_of
from ..tables import T_EXECUTION, T_RESULT, T_STEP

if TYPE_CHECKING:
    from .project import ProjectOrchestrator

#: States of an execution that hasn't finished.
UNFINISHED = ("queued", "assigned")


def run_state(initial_state: str | None, unfinished: bool) -> RunState:
    """The run's state from its initial step's latest execution and whether any
    step of it is unfinished."""
    if unfinished or initial_state is None:
        return "running"
    return run_state_of(initial_state)


def unfinished_runs(
    c: Connection, run_ids: Iterable[str], environment_id: int | None = None
) -> set[str]:
    """Those of ``run_ids`` with an execution (in ``environment_id``, when given)
    that has no result yet."""
    ids = list(run_ids)
    if not ids:
        return set()
    query = (
        select(T_STEP.c.run_id)
        .distinct()
        .join(T_EXECUTION, T_EXECUTION.c.step_id == T_STEP.c.id)
        .outerjoin(T_RESULT, T_RESULT.c.execution_id == T_EXECUTION.c.id)
        .where(T_STEP.c.run_id.in_(ids), T_RESULT.c.execution_id.is_(None))
    )
    if environment_id is not None:
        query = query.where(T_EXECUTION.c.environment_id == environment_id)
    return {row.run_id for row in c.execute(query)}


def live_runs(orchestrator: ProjectOrchestrator, environment_id: int | None = None) -> set[str]:
    """The runs with a live execution (in ``environment_id``, when given), from the
    orchestrator's memory: for listings, where reading every execution of a
    hundred runs would cost a scan of them all (0.2 s for 100 runs of 2,000
    steps). An environment's list asks for its own: a branch's running re-run of
    a production run's step leaves that run finished in production's list.
    Read from a request's thread: the copy of the live executions is made in one
    step, under the GIL (``list`` of a dict's values runs no Python code)."""
    live = list(orchestrator.live.values())
    return {
        e.step.run_id for e in live if environment_id is None or e.environment_id == environment_id
    }


def steps_unfinished(steps: list[dict[str, Any]]) -> bool:
    """Whether any step (as ``get_run`` shows them) has an unfinished latest execution."""
    return any(s["executions"] and s["executions"][-1]["state"] in UNFINISHED for s in steps)


async def wait_for_run(
    orchestrator: ProjectOrchestrator, run_id: str, timeout: float, step: int | None = None
) -> bool:
    """Wait until no execution of the run (or, with ``step``, of that step) is
    live, or for ``timeout``; return whether that moment came.

    Waits for every live execution found, then looks again: a step running
    meanwhile may have submitted more. Each look is one pass over the live
    executions, so a wide run costs as many passes as it is deep.
    """
    deadline = time.monotonic() + timeout
    while True:
        live = [
            e
            for e in orchestrator.live.values()
            if e.step.run_id == run_id and (step is None or e.step.number == step)
        ]
        remaining = deadline - time.monotonic()
        if not live or remaining <= 0:
            # Outcomes may be staged but not yet committed: callers read the
            # run from the database next, so wait for the commit.
            await orchestrator.batch.committed()
            return not live
        finished = _all_ended(orchestrator, [e.id for e in live])
        try:
            await asyncio.wait_for(finished, remaining)
        except TimeoutError:
            return False


def _all_ended(orchestrator: ProjectOrchestrator, ids: list[int]) -> asyncio.Future[None]:
    """A future done once every one of the executions ``ids`` (or what replaced
    it: a retry, a resumption) has ended."""
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    left = len(ids)

    def one_ended(_result: dict[str, Any]) -> None:
        nonlocal left
        left -= 1
        if left == 0 and not finished.done():
            finished.set_result(None)

    for id in ids:
        orchestrator.waiters.setdefault(id, []).append(one_ended)
    return finished
