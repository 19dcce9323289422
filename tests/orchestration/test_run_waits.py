"""Long polls of a run (``progress.wait_for_run``): what one poll costs and
leaves behind must not grow with the run's live executions (issue 26: a
100,000-task fan-out's every poll walked all of them and left a callback on
each when it timed out)."""

from __future__ import annotations

import asyncio
from typing import Any

from .harness import REPOSITORY, Agent, spec, target

INC = target("inc")


def _callbacks(p: Any) -> tuple[int, int]:
    """Callbacks held for waits: on executions (results) and on runs (idle)."""
    index = p.orchestrator.index
    return (
        sum(len(callbacks) for callbacks in index.waiters.values()),
        sum(len(callbacks) for callbacks in getattr(index, "run_idle", {}).values()),
    )


def test_a_poll_of_a_wide_run_holds_one_callback_and_leaves_none(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("fan", "workflow", ()), INC]) as p:
            agent = Agent(p.orchestrator, concurrency=2000)
            for width in (10, 1000):
                run = await p.submit("fan")
                [workflow] = agent.received()
                await agent.run(workflow)
                children = [
                    p.orchestrator.schedule(agent.session, workflow, i, REPOSITORY, spec(INC), [])
                    for i in range(width)
                ]
                await p.settle()
                assert agent.received() == children
                before = _callbacks(p)

                poll = asyncio.create_task(p.orchestrator.wait_for_run(run, 30))
                await asyncio.sleep(0)
                assert _callbacks(p) == (before[0], before[1] + 1)  # one, whatever the width
                poll.cancel()
                await asyncio.gather(poll, return_exceptions=True)
                assert _callbacks(p) == before

                # A poll that times out leaves nothing behind either.
                assert await p.orchestrator.wait_for_run(run, 0.01) is False
                assert _callbacks(p) == before

                # And a poll answers once the run's last execution has ended.
                poll = asyncio.create_task(p.orchestrator.wait_for_run(run, 30))
                for child in children:
                    await agent.run(child)
                    await agent.succeed(child, 1)
                assert not poll.done()  # the workflow still runs
                await agent.succeed(workflow, width)
                assert await poll is True
                assert _callbacks(p) == before

    asyncio.run(scenario())
