"""The state machine (``orchestration/machine.py``, ``calls.py``): retries and
their delays, suspend and resume, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

from coflux.records.references import StepRef

from .harness import REPOSITORY, START, Agent, spec, target, value

FETCH = target("fetch")


def test_a_failure_is_retried_after_the_delays_its_step_allows(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("flaky", "workflow", (), retries=(2, 10.0, 20.0))]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("flaky")
            assert agent.received() == [f"{run}:1:1"]
            await agent.run(f"{run}:1:1")
            await agent.fail(f"{run}:1:1")
            assert p.executions(run) == [
                (f"{run}:1:1", "failed", None),
                (f"{run}:1:2", "queued", None),
            ]

            p.clock.advance(9.9)
            await p.settle()
            assert agent.received() == []  # the first retry waits 10 s
            p.clock.advance(0.1)
            await p.settle()
            assert agent.received() == [f"{run}:1:2"]

            await agent.run(f"{run}:1:2")
            await agent.fail(f"{run}:1:2")
            p.clock.advance(19.9)
            await p.settle()
            assert agent.received() == []  # the last one waits delay_max
            p.clock.advance(0.1)
            await p.settle()
            assert agent.received() == [f"{run}:1:3"]
            await agent.run(f"{run}:1:3")
            await agent.succeed(f"{run}:1:3", "ok")
            assert [state for _, state, _ in p.executions(run)] == ["failed", "failed", "succeeded"]
            assert p.value_of(run) == "ok"

    asyncio.run(scenario())


def test_retries_run_out(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("flaky", "workflow", (), retries=(1, 0.0, 0.0))]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("flaky")
            for attempt in (1, 2):
                assert agent.received() == [f"{run}:1:{attempt}"]
                await agent.run(f"{run}:1:{attempt}")
                await agent.fail(f"{run}:1:{attempt}")
            await p.settle()
            assert agent.received() == []
            assert [state for _, state, _ in p.executions(run)] == ["failed", "failed"]

    asyncio.run(scenario())


def test_a_suspended_execution_resumes_when_due_and_what_it_waits_for_ended(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("poll", "workflow", ()), FETCH]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("poll")
            [first] = agent.received()
            await agent.run(first)
            child = p.orchestrator.schedule(
                agent.session, first, 0, REPOSITORY, spec(FETCH), [value(1)]
            )
            await p.settle()
            assert agent.received() == [child]

            await p.orchestrator.suspend(agent.session, first, START + 30, [child])
            assert p.executions(run) == [
                (first, "suspended", None),
                (f"{run}:1:2", "queued", None),
                (child, "assigned", None),
            ]
            p.clock.advance(30)
            await p.settle()
            assert agent.received() == []  # due, but what it waits for still runs
            await agent.succeed(child, 10)
            await p.settle()
            assert agent.received() == [f"{run}:1:2"]
            # The next attempt's calls are the suspended one's: the same step again.
            again = p.orchestrator.schedule(
                agent.session, f"{run}:1:2", 0, REPOSITORY, spec(FETCH), [value(1)]
            )
            assert again == child

    asyncio.run(scenario())


def test_a_suspension_until_a_time_resumes_then(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("poll", "workflow", ())]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("poll")
            [first] = agent.received()
            await agent.run(first)
            await p.orchestrator.suspend(agent.session, first, START + 5, [])
            p.clock.advance(4.5)
            await p.settle()
            assert agent.received() == []
            p.clock.advance(0.5)
            await p.settle()
            assert agent.received() == [f"{run}:1:2"]

    asyncio.run(scenario())


def test_cancelling_a_run_cancels_what_it_called_and_aborts_it_on_the_agent(start: Any) -> None:
    async def scenario() -> None:
        async with start([target("main", "workflow", ()), FETCH]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("main")
            [caller] = agent.received()
            await agent.run(caller)
            child = p.orchestrator.schedule(
                agent.session, caller, 0, REPOSITORY, spec(FETCH), [value(1)]
            )
            await p.settle()
            assert agent.received() == [child]
            p.clock.advance(5)
            rerun = str(await p.orchestrator.rerun(StepRef(run, 2), "production"))
            assert agent.received() == [rerun]

            # Only what was made by ``before``: the re-run of step 2 came later.
            step = StepRef(run, 2)
            assert await p.orchestrator.cancel(step, before=START + 1, idempotency_key="k") == 1
            assert agent.received("abort") == [child]
            # Repeated, the same answer, and nothing more is cancelled.
            assert await p.orchestrator.cancel(step, before=START + 1, idempotency_key="k") == 1
            assert agent.received("abort") == []

            assert await p.orchestrator.cancel(run) == 2
            assert sorted(agent.received("abort")) == sorted([caller, rerun])
            assert p.executions(run) == [
                (caller, "cancelled", None),
                (child, "cancelled", None),
                (rerun, "cancelled", None),
            ]
            assert await p.orchestrator.cancel(run) == 0

    asyncio.run(scenario())


def test_steps_of_one_spec_share_its_options_as_each_stores_them(start: Any) -> None:
    """A spec's step options are made once (``ExecutionMachine._options``): every
    step of it stores the same row, as ``json.dumps`` of the options wrote it,
    and a spec with other options (a re-registered target) stores its own."""

    async def scenario() -> None:
        square = target("square", cache=60.0)
        async with start([target("main", "workflow", ()), square]) as p:
            agent = Agent(p.orchestrator)
            run = await p.submit("main")
            [caller] = agent.received()
            schedule = p.orchestrator.schedule
            cached = spec(square)
            first = schedule(agent.session, caller, 0, REPOSITORY, cached, [value(1)])
            second = schedule(agent.session, caller, 1, REPOSITORY, cached, [value(2)])
            retried = spec(target("square", retries=(2, 1.0, 5.0)))
            third = schedule(agent.session, caller, 2, REPOSITORY, retried, [value(3)])
            await p.settle()
            live = p.orchestrator.index.live
            steps = {e.ref: e.step for e in live.values()}
            assert steps[first].options is steps[second].options  # made once
            with p.engine.connect() as c:
                stored = dict(
                    c.exec_driver_sql(
                        "SELECT number, options FROM steps WHERE run_id = ?", (run,)
                    ).all()
                )
            cache = '{"max_age": 60.0, "params": null, "namespace": null, "version": null}'
            assert (
                stored[2]
                == stored[3]
                == (
                    '{"wait": false, "memo": false, "defer": false, "cache": ' + cache + ", "
                    '"wait_indexes": []}'
                )
            )
            assert stored[4] == (
                '{"wait": false, "memo": false, "defer": false, "retries": '
                '{"limit": 2, "delay_min": 1.0, "delay_max": 5.0}, "wait_indexes": []}'
            )
            assert steps[third].options["retries"] == {
                "limit": 2,
                "delay_min": 1.0,
                "delay_max": 5.0,
            }

    asyncio.run(scenario())
