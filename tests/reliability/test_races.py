"""Fault scenarios of things that happen at once: CLI writers sharing the
local state, a cancel racing a result, timeouts, and a cancel that must kill a
task's whole process group. The table of all scenarios is in docs/reliability.md."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import Workspace, wait_until

from .faults import (
    PUPPETS,
    assert_healthy,
    starts,
    two_agents,
)


def test_s11_concurrent_cli_writers_share_the_local_state(workspace: Workspace) -> None:
    """Eight loops of `submit`, `runs list` and `sync` at once for 5 s: every
    command succeeds, nothing reports a locked database, every submission makes
    exactly one run, and the workspace's state.db stays intact."""
    from concurrent.futures import ThreadPoolExecutor

    workspace.write("flows.py", PUPPETS)
    workspace.env["COFLUX_JOURNAL"] = str(workspace.root / "journal.jsonl")
    workspace.start_agent("flows.py")
    commands = [
        ("submit", "flows.py", "main", "1", "--json"),
        ("runs", "list", "--json"),
        ("sync",),
    ]

    def loop(n: int) -> list[tuple[tuple[str, ...], int, str]]:
        results = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            args = commands[n % len(commands)]
            done = workspace.cli(*args)
            results.append((args, done.returncode, done.stderr + done.stdout))
        return results

    with ThreadPoolExecutor(8) as pool:
        outcomes = [r for rs in pool.map(loop, range(8)) for r in rs]
    for args, code, output in outcomes:
        assert code == 0, (args, output)
        assert "locked" not in output, (args, output)
    submitted = [json.loads(out)["id"] for args, _, out in outcomes if args[0] == "submit"]
    assert len(submitted) >= 3 and len(set(submitted)) == len(submitted)
    with workspace.client() as client:
        on_server = {r["id"] for r in client.list_runs("production", limit=10000)}
    assert on_server == set(submitted)
    state = workspace.root / ".coflux" / "state.db"
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_s22_cancel_racing_a_result_ends_in_exactly_one_state(tmp_path: Path) -> None:
    """A task waits at a gate just before returning; its run is cancelled and the
    gate opened, in both orders, 10 times each. A cancel acknowledged before the
    gate opens always wins: the late result is refused, never recorded over
    `cancelled`. With the gate opened first the two race: either outcome is
    right, but it is one terminal state, and it stays."""
    outcomes: Counter[tuple[str, str]] = Counter()
    with two_agents(tmp_path) as (server, ws, tasker, _, _), ws.client() as client:
        for round in range(20):
            journal = tmp_path / f"round{round}"
            journal.mkdir()
            argument = {"format": "json", "size": 1, "data": str(journal)}
            run_id = client.submit("production", "wf", "run_gated", [argument])["id"]
            wait_until(lambda journal=journal: len(starts(journal)) == 1, interval=0.005)
            order = "release first" if round % 2 else "cancel first"
            if order == "release first":
                (journal / "gate").touch()
            client.cancel(run_id)
            if order == "cancel first":
                (journal / "gate").touch()
            client.wait_for_run(run_id, timeout=10)
            time.sleep(0.15)  # a late result has arrived by now
            first = client.get_run(run_id)
            time.sleep(0.15)
            assert client.get_run(run_id) == first, round  # terminal states stay
            task = first["steps"][1]["executions"]
            assert len(task) == 1, task
            state = task[0]["state"]
            if order == "cancel first" or state == "cancelled":
                assert state == "cancelled", (round, task)
                assert task[0]["value"] is None
            else:
                assert state == "succeeded", (round, task)
                assert task[0]["value"]["data"] == "released 1"
            outcomes[(order, state)] += 1
        assert_healthy(server)
    assert outcomes[("cancel first", "cancelled")] == 10
    assert sum(n for (order, _), n in outcomes.items() if order == "release first") == 10


TIMEOUTS = """
    import json
    import os
    import signal
    import time
    from pathlib import Path
    import coflux as cf

    def begin(journal):
        path = Path(journal)
        with open(path, "a") as f:
            f.write(json.dumps({"pid": os.getpid()}) + "\\n")
        return len(path.read_text().splitlines())

    @cf.task(timeout=1)
    def forever(journal: str) -> str:
        begin(journal)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)

    @cf.task(timeout=1, retries=1)
    def second_chance(journal: str) -> str:
        attempt = begin(journal)
        if attempt == 1:
            time.sleep(60)
        return f"attempt {attempt}"

    @cf.workflow()
    def run_forever(journal: str) -> str:
        return forever(journal)

    @cf.workflow()
    def run_second_chance(journal: str) -> str:
        return second_chance(journal)

    @cf.task()
    def endless(journal: str) -> str:
        begin(journal)
        time.sleep(1000)
        return "never"

    @cf.workflow(timeout=1)
    def impatient(journal: str) -> str:
        return endless(journal)
"""


def failed_run(workspace: Workspace, workflow: str, journal: Path) -> dict[str, Any]:
    """Submit ``workflow`` (of TIMEOUTS) and wait: it fails; the run as shown."""
    workspace.write("flows.py", TIMEOUTS)
    workspace.start_agent("flows.py")
    done = workspace.cli("submit", "flows.py", workflow, str(journal), "--wait", "--json")
    assert done.returncode == 1, done.stderr
    with workspace.client() as client:
        return client.get_run(json.loads(done.stdout)["id"])


def test_s23_a_task_over_its_timeout_is_killed_and_fails(workspace: Workspace) -> None:
    from datetime import datetime

    journal = workspace.root / "forever.jsonl"
    run = failed_run(workspace, "run_forever", journal)
    (execution,) = run["steps"][1]["executions"]
    assert execution["state"] == "failed"
    assert execution["error"]["type"] == "coflux.Timeout"
    assert execution["error"]["message"] == "timed out after 1 s"
    took = datetime.fromisoformat(execution["finished_at"]) - datetime.fromisoformat(
        execution["started_at"]
    )
    assert took.total_seconds() >= 0.5  # the task's timer starts before it reports started
    pid = json.loads(journal.read_text().splitlines()[0])["pid"]
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)

    journal = workspace.root / "second.jsonl"
    retried = workspace.cli_json("submit", "flows.py", "run_second_chance", str(journal), "--wait")
    assert retried["result"] == "attempt 2"
    with workspace.client() as client:
        run = client.get_run(retried["id"])
    assert [e["state"] for e in run["steps"][1]["executions"]] == ["failed", "succeeded"]


def test_s23_a_workflow_over_its_timeout_cancels_what_it_called(workspace: Workspace) -> None:
    journal = workspace.root / "endless.jsonl"
    run = failed_run(workspace, "impatient", journal)
    (workflow,), (child,) = (step["executions"] for step in run["steps"])
    assert (workflow["state"], workflow["error"]["type"]) == ("failed", "coflux.Timeout")
    assert child["state"] == "cancelled"
    pid = json.loads(journal.read_text().splitlines()[0])["pid"]
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=2)


GRANDCHILD = """
    import signal
    import subprocess
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task()
    def spawns(journal: str) -> str:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "1000"])
        Path(journal, "grandchild").write_text(str(child.pid))
        time.sleep(1000)
        return "never"

    @cf.workflow()
    def parent(journal: str) -> str:
        return spawns(journal)
"""


def test_s22_cancelling_kills_the_tasks_whole_process_group(workspace: Workspace) -> None:
    workspace.write("flows.py", GRANDCHILD)
    workspace.start_agent("flows.py")
    journal = workspace.root / "journal"
    journal.mkdir()
    submitted = workspace.cli_json("submit", "flows.py", "parent", str(journal))
    wait_until(lambda: (journal / "grandchild").exists())
    grandchild = int((journal / "grandchild").read_text())
    assert Path(f"/proc/{grandchild}").exists()
    workspace.cli("cancel", submitted["id"], check=True)

    # Gone (or a zombie awaiting its reaper), SIGTERM ignored or not.
    def gone() -> bool:
        try:
            return "State:\tZ" in Path(f"/proc/{grandchild}/status").read_text()
        except FileNotFoundError:
            return True

    wait_until(gone, timeout=10)
    with workspace.client() as client:
        run = client.get_run(submitted["id"])
    assert [e["state"] for s in run["steps"] for e in s["executions"]] == ["cancelled"] * 2
