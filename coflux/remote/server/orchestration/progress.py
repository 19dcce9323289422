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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from ....records.states import RunState, run_state_of
from ..tables import T_EXECUTION, T_RESULT, T_STEP

if TYPE_CHECKING:
    from .index import LiveIndex
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

    A poll costs what the run has live, never a walk of every live execution,
    and leaves nothing behind when it times out: a wait for the whole run is
    one callback, called when the run's last live execution ends (the index
    keeps each run's live executions); a wait for one step waits for that
    step's live executions, found among the run's. Either looks again when
    woken: an ending execution may have been replaced (a retry), or a step
    running meanwhile may have submitted more.
    """
    index = orchestrator.index
    deadline = time.monotonic() + timeout
    while True:
        run_live = index.live_by_run.get(run_id, ())
        if step is None:
            live = bool(run_live)
        else:
            live = any(index.live[id].step.number == step for id in run_live)
        remaining = deadline - time.monotonic()
        if not live or remaining <= 0:
            # Outcomes may be staged but not yet committed: callers read the
            # run from the database next, so wait for the commit.
            await orchestrator.batch.committed()
            return not live
        if step is None:
            woken, forget = _run_idle(index, run_id)
        else:
            ids = [id for id in run_live if index.live[id].step.number == step]
            woken, forget = _all_ended(index, ids)
        try:
            await asyncio.wait_for(woken, remaining)
        except TimeoutError:
            return False
        finally:
            forget()


def _run_idle(index: LiveIndex, run_id: str) -> tuple[asyncio.Future[None], Callable[[], None]]:
    """A future done once the run has nothing live, and how to withdraw it."""
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def idle() -> None:
        if not woken.done():
            woken.set_result(None)

    index.run_idle.setdefault(run_id, []).append(idle)

    return woken, lambda: _withdraw(index.run_idle, run_id, idle)


def _all_ended(index: LiveIndex, ids: list[int]) -> tuple[asyncio.Future[None], Callable[[], None]]:
    """A future done once every one of the executions ``ids`` (or what replaced
    it: a retry, a resumption) has ended, and how to withdraw its callbacks."""
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    left = len(ids)

    def one_ended(_result: dict[str, Any]) -> None:
        nonlocal left
        left -= 1
        if left == 0 and not finished.done():
            finished.set_result(None)

    for id in ids:
        index.waiters.setdefault(id, []).append(one_ended)

    def forget() -> None:
        # Those of a poll that timed out would otherwise stay until each ends.
        for id in ids:
            _withdraw(index.waiters, index.latest(id), one_ended)

    return finished, forget


def _withdraw(
    callbacks: dict[Any, list[Callable[..., None]]], key: Any, callback: Callable[..., None]
) -> None:
    """Take ``callback`` off ``callbacks[key]`` if it is there, and the key with its last one."""
    waiting = callbacks.get(key)
    if waiting is not None and callback in waiting:
        waiting.remove(callback)
        if not waiting:
            del callbacks[key]
