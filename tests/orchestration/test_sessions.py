"""Agent sessions (``orchestration/sessions.py``): the start timeout and the agent timeout."""

from __future__ import annotations

import asyncio
from typing import Any

from coflux.records.connection import CLOSE_TIMED_OUT

from .harness import Agent, target


def test_an_execution_never_reported_started_is_assigned_again(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("main", "workflow", ())]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("main")
            assert agent.received() == [f"{run}:1:1"]
            timeout = p.settings.start_timeout
            p.clock.advance(timeout)
            p.orchestrator.heartbeat(agent.session, [])
            await p.settle()
            assert agent.received() == []  # not yet past the start timeout
            p.clock.advance(0.1)
            p.orchestrator.heartbeat(agent.session, [])
            await p.settle()
            assert agent.received() == [f"{run}:1:1"]  # the same execution, not a retry
            assert p.executions(run) == [(f"{run}:1:1", "assigned", None)]

    asyncio.run(scenario())


def test_a_silent_agent_is_closed_and_its_started_executions_abandoned(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("main", "workflow", ())]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("main")
            await agent.run(f"{run}:1:1")
            p.clock.advance(p.settings.agent_timeout)
            p.orchestrator.sessions.expire_silent()
            assert agent.received("close") == []
            p.clock.advance(0.1)
            p.orchestrator.sessions.expire_silent()
            await p.settle()
            assert [m["params"]["code"] for m in agent.sent if m["method"] == "close"] == [
                CLOSE_TIMED_OUT
            ]
            assert p.executions(run) == [(f"{run}:1:1", "abandoned", None)]
            assert p.orchestrator.list_agents() == []

    asyncio.run(scenario())
