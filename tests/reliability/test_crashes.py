"""Fault scenarios of processes that die or stop: the server killed mid-run, a
crash on either side of a commit (named failpoints in the server), an agent
stopped while it works. The table of all scenarios is in docs/reliability.md."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import ServerProcess, Workspace, private_stack, wait_until

from .faults import (
    FAN_OUT_GATED,
    PUPPETS,
    assert_healthy,
    journal,
    journal_events,
    starts,
    two_agents,
)


def test_s04_a_server_killed_mid_run_loses_nothing_it_acknowledged(
    tmp_path: Path, database_url: str | None
) -> None:
    """50 tasks: ten finished, eight running behind a gate, the rest queued, when
    the server is killed. The gate opens while it is down (the agents hold the
    results), and it restarts a second later on the same data (SQLite, then
    PostgreSQL)."""
    journal_path = tmp_path / "journal.jsonl"
    gate = tmp_path / "gate"

    def events() -> list[dict[str, Any]]:
        return journal_events(journal_path)

    with private_stack(tmp_path, database_url=database_url) as (server, ws):
        ws.write("flows.py", FAN_OUT_GATED)
        ws.env["COFLUX_JOURNAL"] = str(journal_path)
        ws.start_agent("flows.py", concurrency=4)
        ws.start_agent("flows.py", concurrency=4)
        submitted = ws.cli_json("submit", "flows.py", "fan", "50", str(gate))
        wait_until(lambda: sum(e["event"] == "end" for e in events()) == 10)
        wait_until(lambda: sum(e["event"] == "start" for e in events()) == 18)
        with ws.client() as client:
            before = client.get_run(submitted["id"])
        acknowledged = {
            s["id"]: s["executions"][0]["value"]
            for s in before["steps"][1:]
            if s["executions"][0]["state"] == "succeeded"
        }
        assert len(acknowledged) == 10

        server.kill()
        gate.touch()  # the running tasks finish while the server is down
        wait_until(lambda: sum(e["event"] == "end" for e in events()) == 18)
        time.sleep(1)
        server.start()
        ws.wait_for_agents(2)
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=60)
            after = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert after["steps"][0]["executions"][-1]["value"]["data"] == sum(i * i for i in range(50))
        # Everything acknowledged before the kill is there, unchanged.
        values = {s["id"]: s["executions"][0]["value"] for s in after["steps"][1:]}
        assert {k: values[k] for k in acknowledged} == acknowledged
        # No step ran twice: one start per task, and one execution per step.
        starts = Counter(e["arg"] for e in events() if e["event"] == "start")
        assert starts == Counter(range(50))
        assert [len(s["executions"]) for s in after["steps"]] == [1] * 51
        if not database_url:
            database = server.data_dir / "projects" / f"{ws.project}.sqlite"
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert_healthy(server)


def puppets(ws: Workspace, tmp_path: Path) -> Path:
    log = tmp_path / "journal.jsonl"
    ws.write("flows.py", PUPPETS)
    ws.env["COFLUX_JOURNAL"] = str(log)
    return log


def restart_with(server: ServerProcess, failpoints: str) -> None:
    server.stop()
    server.env = {"COFLUX_FAILPOINTS": failpoints} if failpoints else {}
    server.start()


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_s05_a_crash_around_a_results_commit_records_it_once(tmp_path: Path, point: str) -> None:
    """The server dies (exit 137) just before, or just after, committing a task's
    result; restarted, it gets the result again from the agent and records it once."""
    with private_stack(tmp_path) as (server, ws):
        log = puppets(ws, tmp_path)
        restart_with(server, f"put_result.{point}=exit")
        ws.start_agent("flows.py")
        submitted = ws.cli_json("submit", "flows.py", "main", "4")
        assert server.process is not None
        assert server.process.wait(20) == 137
        restart_with(server, "")
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=30)
            run = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert run["steps"][0]["executions"][-1]["value"]["data"] == 41
        # The task ran once; each step has one execution with one result.
        assert journal(log) == Counter({("quick", "start"): 1, ("quick", "end"): 1})
        assert [[e["state"] for e in s["executions"]] for s in run["steps"]] == [
            ["succeeded"],
            ["succeeded"],
        ]
        assert_healthy(server)


def test_s69_a_start_lost_before_its_commit_is_known_again(tmp_path: Path) -> None:
    """A ``started`` report joins the next commit instead of costing its own: the
    server dies (exit 137) with one staged and unwritten; restarted, it learns
    the start again from the agent (its hello lists the execution, the report is
    sent again), and the run ends with each task run once, nothing retried."""
    with private_stack(tmp_path) as (server, ws):
        log = puppets(ws, tmp_path)
        restart_with(server, "started.before_commit=exit")
        ws.start_agent("flows.py")
        submitted = ws.cli_json("submit", "flows.py", "main", "4")
        assert server.process is not None
        assert server.process.wait(20) == 137
        restart_with(server, "")
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=30)
            run = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert run["steps"][0]["executions"][-1]["value"]["data"] == 41
        assert journal(log) == Counter({("quick", "start"): 1, ("quick", "end"): 1})
        assert [[e["state"] for e in s["executions"]] for s in run["steps"]] == [
            ["succeeded"],
            ["succeeded"],
        ]
        assert all(e["started_at"] for s in run["steps"] for e in s["executions"])
        assert_healthy(server)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_s05_a_crash_around_a_submissions_commit_makes_one_run(tmp_path: Path, point: str) -> None:
    """The server dies while committing a submission; the CLI queues it (the
    server is unreachable), and `coflux sync` after the restart makes exactly
    one run, whether or not the first attempt had committed."""
    with private_stack(tmp_path) as (server, ws):
        puppets(ws, tmp_path)
        ws.start_agent("flows.py")
        restart_with(server, f"submit.{point}=exit")
        queued = ws.cli("submit", "flows.py", "main", "2")
        assert queued.returncode == 0, queued.stderr
        assert "queued: server unreachable; run `coflux sync`" in queued.stdout + queued.stderr
        restart_with(server, "")
        ws.wait_for_agents(1)
        for _ in range(2):  # a repeated sync changes nothing
            synced = ws.cli("sync")
            assert synced.returncode == 0, synced.stderr
        runs = ws.cli_json("runs", "list")
        assert len(runs) == 1, runs
        with ws.client() as client:
            final = client.wait_for_run(runs[0]["id"], timeout=30)
            run = client.get_run(runs[0]["id"])
        assert final["state"] == "succeeded"
        assert run["steps"][0]["executions"][-1]["value"]["data"] == 21
        # A workflow committed but never sent to the agent is sent again, as
        # the same execution (I4: no retry used up).
        assert [len(s["executions"]) for s in run["steps"]] == [1, 1]
        assert_healthy(server)


def test_s03_a_stopped_agent_drains_and_a_second_stop_abandons_at_once(
    tmp_path: Path,
) -> None:
    import signal

    with two_agents(tmp_path) as (server, ws, tasker, _, journal):
        first = ws.cli_json("submit", "wf.py", "run_gated", str(journal))
        wait_until(lambda: len(starts(journal)) == 1)
        agent = tasker.agents[0]
        os.kill(agent.pid, signal.SIGTERM)
        with ws.client() as client:
            wait_until(lambda: sorted(a["draining"] for a in client.list_agents()) == [False, True])
        second = ws.cli_json("submit", "wf.py", "run_gated", str(journal))
        (journal / "gate").touch()
        assert agent.wait(10) == 0
        with ws.client() as client:
            assert client.wait_for_run(first["id"], timeout=10)["state"] == "succeeded"
        second_agent = tasker.start_agent("tasks.py", wait=False)
        with ws.client() as client:
            assert client.wait_for_run(second["id"], timeout=10)["state"] == "succeeded"
        # Nothing new went to the draining agent: the second run's task ran in a
        # process of the agent started after it (each start notes its agent's pid).
        assert [s["agent"] for s in starts(journal)] == [agent.pid, second_agent.pid]

        # A second signal kills what still runs; the server abandons it at once
        # and the retry runs on another agent.
        (journal / "gate").unlink()
        (journal / "journal.jsonl").unlink()
        held = ws.cli_json("submit", "wf.py", "run_held", str(journal))
        wait_until(lambda: len(starts(journal)) == 1)
        pid = starts(journal)[0]["pid"]
        tasker.start_agent("tasks.py", wait=False)  # where the retry can go
        with ws.client() as client:
            wait_until(lambda: sum(a["connected"] for a in client.list_agents()) == 3)
        os.kill(second_agent.pid, signal.SIGTERM)
        with ws.client() as client:
            wait_until(
                lambda: (
                    [a["draining"] for a in client.list_agents() if a["connected"]].count(True) == 1
                )
            )
            os.kill(second_agent.pid, signal.SIGTERM)
            # Abandoned on the agent's word: the agent timeout (30 s) is far off,
            # so only the agent's report can abandon it within this wait.
            wait_until(
                lambda: (
                    client.get_run(held["id"])["steps"][1]["executions"][0]["state"] == "abandoned"
                ),
                timeout=15,
            )
            final = client.wait_for_run(held["id"], timeout=10)
            run = client.get_run(held["id"])
        assert not Path(f"/proc/{pid}").exists()
        assert final["state"] == "succeeded"
        assert run["steps"][0]["executions"][0]["value"]["data"] == "attempt 2"
        assert second_agent.wait(5) == 0
        assert_healthy(server)
