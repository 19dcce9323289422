"""Nested calls deeper than an agent may hold (issue 25's fib(20) at concurrency 4).

An execution waiting for its child's result doesn't count against the agent's
concurrency, but an agent holds at most 4 x concurrency executions (at least
16), waiting ones included, so its processes stay bounded. A chain of nested
calls deeper than that waits for another agent: the CLI while it waits and
the run's page say so in one line, and a second agent lets it finish.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import Workspace, wait_until

NESTED = """
    import coflux as cf

    @cf.task()
    def nest(n: int) -> int:
        return 0 if n == 0 else 1 + nest(n - 1)

    @cf.workflow()
    def deep(n: int) -> int:
        return nest(n)
"""

FULL = (
    "waiting: every agent of environment 'production' serving flows holds all it may "
    "(16 executions, 16 of them waiting for other results; an agent holds at most 4 x "
    "its concurrency, and at least 16); start another agent (`coflux agent MODULE --env "
    "production`) or raise its --concurrency"
)


def test_nesting_deeper_than_an_agent_holds_says_so_and_a_second_agent_finishes_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace
    ws.write("flows.py", NESTED)
    ws.start_agent("flows.py", concurrency=1)
    errors = tmp_path / "submit.err"
    with open(errors, "w") as stderr:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "coflux", "submit", "flows.py", "deep", "20"]
            + ["--wait", "--json"],
            cwd=ws.root,
            env=ws.environ,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    with ws.client() as client:

        def held() -> bool:
            [agent] = client.list_agents()
            # Every execution held is waiting for the next (the last has called it).
            return agent["running"] == agent["waiting"] == agent["limit"]

        wait_until(held, timeout=60)
        [agent] = client.list_agents()
        run_id = client.list_runs("production")[0]["id"]
    # The workflow and 15 of its nested calls.
    assert (agent["running"], agent["waiting"], agent["limit"]) == (16, 16, 16)
    wait_until(lambda: errors.read_text(), timeout=20)
    assert errors.read_text() == FULL + "\n"
    page = httpx.get(f"{ws.server}/projects/{ws.project}/runs/{run_id}?env=production").text
    assert FULL.replace("'", "&#39;") in page
    # A second agent takes the rest of the chain.
    ws.start_agent("flows.py", concurrency=1)
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0
    assert json.loads(out)["result"] == 20
