"""Why a run waits: a queued execution no connected agent of its environment can take.

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
            if execution.get("state") != "queued" or (environment, repository) in serving:
                continue
            return (
                f"waiting: no agent of environment {environment!r} serving {repository} "
                f"is connected; it runs when one is (`coflux dev` on its branch, or "
                f"`coflux agent MODULE --env {environment}`)"
            )
    return None
