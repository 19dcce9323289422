"""Reuse rules (``orchestration/reuse.py``): cache hits, links and age; memo; defer."""

from __future__ import annotations

import asyncio
from typing import Any

from .harness import REPOSITORY, Agent, spec, target, value

CACHED = target("square", "workflow", cache=60.0)


def test_a_cached_result_is_reused_until_it_is_older_than_max_age(start: Any) -> None:
    async def scenario() -> None:
        async with start([CACHED]) as p:
            agent = Agent(p.orchestrator)
            first = await p.submit("square", 3)
            assert agent.received() == [f"{first}:1:1"]
            await agent.run(f"{first}:1:1")
            await agent.succeed(f"{first}:1:1", 9)

            p.clock.advance(60)  # exactly max_age old: still reused
            hit = await p.submit("square", 3)
            other = await p.submit("square", 4)  # other arguments: a miss
            assert agent.received() == [f"{other}:1:1"]
            assert p.executions(hit) == [(f"{hit}:1:1", "cached", f"{first}:1:1")]
            assert p.value_of(hit) == 9

            p.clock.advance(60.5)  # the newest success (the hit) is now too old
            miss = await p.submit("square", 3)
            assert agent.received() == [f"{miss}:1:1"]
            assert p.executions(miss) == [(f"{miss}:1:1", "assigned", None)]

    asyncio.run(scenario())


def test_a_call_while_its_cache_key_is_pending_waits_for_that_result(start: Any) -> None:
    async def scenario() -> None:
        async with start([CACHED]) as p:
            agent = Agent(p.orchestrator)
            first = await p.submit("square", 5)
            linked = await p.submit("square", 5)
            assert agent.received() == [f"{first}:1:1"]  # one execution for both
            assert p.executions(linked) == [(f"{linked}:1:1", "queued", None)]
            await agent.succeed(f"{first}:1:1", 25)
            await p.settle()
            assert p.executions(linked) == [(f"{linked}:1:1", "cached", f"{first}:1:1")]
            assert p.value_of(linked) == 25

    asyncio.run(scenario())


def test_a_failure_is_never_reused_by_the_calls_linked_to_it(start: Any) -> None:
    async def scenario() -> None:
        async with start([CACHED]) as p:
            agent = Agent(p.orchestrator)
            first = await p.submit("square", 5)
            linked = await p.submit("square", 5)
            assert agent.received() == [f"{first}:1:1"]
            await agent.fail(f"{first}:1:1")
            await p.settle()
            assert agent.received() == [f"{linked}:1:1"]  # it runs itself
            assert p.executions(first) == [(f"{first}:1:1", "failed", None)]
            assert p.executions(linked) == [(f"{linked}:1:1", "assigned", None)]

    asyncio.run(scenario())


def test_a_memoised_call_refers_to_the_step_the_run_already_has(start: Any) -> None:
    async def scenario() -> None:
        lookup = target("lookup", memo=True)
        async with start([target("main", "workflow", ()), lookup]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("main")
            [caller] = agent.received()
            schedule = p.orchestrator.schedule
            first = schedule(agent.session, caller, 0, REPOSITORY, spec(lookup), [value(1)])
            again = schedule(agent.session, caller, 1, REPOSITORY, spec(lookup), [value(1)])
            other = schedule(agent.session, caller, 2, REPOSITORY, spec(lookup), [value(2)])
            resent = schedule(agent.session, caller, 0, REPOSITORY, spec(lookup), [value(1)])
            await p.settle()
            assert (first, again, other, resent) == (
                f"{run}:2:1",
                f"{run}:2:1",
                f"{run}:3:1",
                f"{run}:2:1",
            )
            assert agent.received() == [f"{run}:2:1", f"{run}:3:1"]

    asyncio.run(scenario())


def test_a_newer_call_with_the_same_defer_key_replaces_one_not_started(start: Any) -> None:
    async def scenario() -> None:
        notify = target("notify", defer=True)
        async with start([target("main", "workflow", ()), notify]) as p:
            agent = Agent(p.orchestrator, concurrency=1)  # busy with the workflow
            run = await p.submit("main")
            [caller] = agent.received()
            schedule = p.orchestrator.schedule
            older = schedule(agent.session, caller, 0, REPOSITORY, spec(notify), [value("x")])
            newer = schedule(agent.session, caller, 1, REPOSITORY, spec(notify), [value("x")])
            await p.settle()
            assert p.executions(run) == [
                (caller, "assigned", None),
                (older, "deferred", None),
                (newer, "queued", None),
            ]
            outcomes: list[dict[str, Any]] = []
            # Waiting, the caller frees its slot: the newer call runs, and is
            # what the older one's caller reads.
            p.orchestrator.get_result(older, outcomes.append, agent.session, caller)
            await p.settle()
            assert agent.received() == [newer]
            await agent.succeed(newer, "sent")
            assert outcomes == [{"state": "succeeded", "value": value("sent")}]

    asyncio.run(scenario())


def test_after_a_restart_a_pending_cache_link_still_holds(start: Any) -> None:
    async def scenario() -> None:
        async with start([CACHED]) as p:
            agent = Agent(p.orchestrator)
            first = await p.submit("square", 7)
            linked = await p.submit("square", 7)
            assert agent.received() == [f"{first}:1:1"]
            await agent.run(f"{first}:1:1")
            restarted = await p.restart()
            # The same agent comes back, still running the first execution.
            again = Agent(restarted, running=[f"{first}:1:1"])
            await p.settle()
            assert again.received() == []  # the linked call waits, it doesn't run
            await again.succeed(f"{first}:1:1", 49)
            await p.settle()
            assert p.executions(linked) == [(f"{linked}:1:1", "cached", f"{first}:1:1")]

    asyncio.run(scenario())
