"""Why a run waits: a queued execution no connected agent of its environment can take.

Either no agent serving it is connected, or every one holds as many executions as
it may (nested calls waiting for their children count toward that bound).

A re-run in a branch executes with the branch's agents (its ``coflux dev``);
when none is connected, the execution stays queued until one is, which looks
like a hang. The CLI (while it waits) and the run page say so, in one line
naming the environment, the repository and how to serve it. Shared by both
sides: it reads only the run's and the agents' JSON shapes.
"""

from __future__ import annotations

from typing import Any


def waiting_notice(run: dict[str, Any], agents: list[dict[str, Any]]) -> str | None:
    """One line for the first queued execution no connected agent could take, or None."""
    serving = {
        (agent["environment"], repository)
        for agent in agents
        if agent.get("connected")
        for repository in agent.get("repositories") or ()
    }
    for step in run.get("steps") or ():
        repository = str(step.get("target", "")).partition(":")[0]
        for execution in step.get("executions") or ():
            environment = execution.get("environment")
            if execution.get("state") != "queued":
                continue
            if (environment, repository) not in serving:
                return (
                    f"waiting: no agent of environment {environment!r} serving {repository} "
                    f"is connected; it runs when one is (`coflux dev` on its branch, or "
                    f"`coflux agent MODULE --env {environment}`)"
                )
            full = _all_held(agents, environment, repository)
            if full is not None:
                return full
    return None


def _all_held(agents: list[dict[str, Any]], environment: str, repository: str) -> str | None:
    """The notice when every agent that could take the execution holds as many as it
    may, mostly executions waiting for other results (nested calls deeper than
    that limit wait for another agent), or None."""
    able = [
        a
        for a in agents
        if a.get("connected")
        and a["environment"] == environment
        and repository in (a.get("repositories") or ())
    ]
    limits = [a.get("limit") for a in able]
    if not able or None in limits or any(a["running"] < a["limit"] for a in able):
        return None
    waiting = sum(a.get("waiting", 0) for a in able)
    held = sum(a["running"] for a in able)
    return (
        f"waiting: every agent of environment {environment!r} serving {repository} holds "
        f"all it may ({held} executions, {waiting} of them waiting for other results; an "
        f"agent holds at most 4 x its concurrency, and at least 16); start another agent "
        f"(`coflux agent MODULE --env {environment}`) or raise its --concurrency"
    )
