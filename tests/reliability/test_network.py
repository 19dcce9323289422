"""Fault scenarios of the network between agents and the server, each through a
real TCP proxy (tests/proxy.py): cuts shorter and longer than the agent
timeout, a silent black hole, a lost ``execute``, a second connection of one
session, agents racing through flaky links. The table of all scenarios is in
docs/reliability.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import websockets
from conftest import ServerProcess, Workspace, new_workspace, private_stack, wait_until

from .faults import (
    PUPPETS,
    assert_healthy,
    behind_a_proxy,
    journal,
    starts,
    two_agents,
)


def test_s06_a_cut_shorter_than_the_timeout_loses_nothing(tmp_path: Path) -> None:
    with behind_a_proxy(tmp_path) as (server, ws, far, proxy, journal):
        submitted = ws.cli_json("submit", "wf.py", "run_gated", str(journal))
        wait_until(lambda: len(starts(journal)) == 1)
        proxy.drop()
        (journal / "gate").touch()  # the task finishes during the cut
        time.sleep(0.5)
        proxy.heal()
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=10)
            run = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert run["steps"][0]["executions"][0]["value"]["data"] == "released 1"
        assert [e["state"] for e in run["steps"][1]["executions"]] == ["succeeded"]
        assert len(starts(journal)) == 1
        assert_healthy(server)


def test_s07_a_cut_longer_than_the_timeout_is_fenced_then_retried_elsewhere(
    tmp_path: Path,
) -> None:
    with behind_a_proxy(tmp_path) as (server, ws, far, proxy, journal):
        submitted = ws.cli_json("submit", "wf.py", "run_held", str(journal))
        wait_until(lambda: len(starts(journal)) == 1)
        first = starts(journal)[0]["pid"]
        ws.start_agent("tasks.py")  # where the retry can go
        proxy.drop()
        cut = time.time()
        wait_until(lambda: not Path(f"/proc/{first}").exists(), timeout=15, interval=0.02)
        fenced = time.time()
        wait_until(lambda: len(starts(journal)) == 2, timeout=15)
        time.sleep(max(0.0, 4 - (time.time() - cut)))
        proxy.heal()
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=10)
            run = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert run["steps"][0]["executions"][0]["value"]["data"] == "attempt 2"
        assert [e["state"] for e in run["steps"][1]["executions"]] == ["abandoned", "succeeded"]
        # I2: the first attempt's process was gone before the second started, and
        # not before the fence (0.75 x the 2 s timeout, less one heartbeat interval).
        assert fenced - cut >= 1.1
        assert fenced < starts(journal)[1]["t"]
        assert "fenced: lost contact with server for" in far.agent_log()
        assert_healthy(server)


def test_s08_a_silent_black_hole_is_detected_like_a_cut(tmp_path: Path) -> None:
    """No FIN, no RST: both sides notice only the silence."""
    with behind_a_proxy(tmp_path) as (server, ws, far, proxy, journal):
        submitted = ws.cli_json("submit", "wf.py", "run_held", str(journal))
        wait_until(lambda: len(starts(journal)) == 1)
        first = starts(journal)[0]["pid"]
        ws.start_agent("tasks.py")
        proxy.blackhole()
        cut = time.time()
        wait_until(lambda: not Path(f"/proc/{first}").exists(), timeout=15, interval=0.02)
        fenced = time.time()
        wait_until(lambda: len(starts(journal)) == 2, timeout=15)
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=10)
        proxy.heal()
        assert final["state"] == "succeeded"
        assert fenced - cut >= 1.1
        assert fenced < starts(journal)[1]["t"]
        assert_healthy(server)


def test_s08_a_lost_execute_is_assigned_again_without_using_a_retry(tmp_path: Path) -> None:
    """The agent discards its first ``execute`` as if it never arrived: after the
    start timeout (1 s here) the server assigns the same execution again."""
    server = ServerProcess(tmp_path / "data", args=("--start-timeout", "1")).start()
    ws = new_workspace(server, tmp_path / "ws")
    try:
        ws.write("flows.py", PUPPETS)
        ws.env["COFLUX_JOURNAL"] = str(tmp_path / "journal.jsonl")
        ws.env["COFLUX_FAILPOINTS"] = "execute.before_start=drop:1"
        ws.start_agent("flows.py")
        started = time.monotonic()
        done = ws.cli_json("submit", "flows.py", "main", "4", "--wait")
        seconds = time.monotonic() - started
        with ws.client() as client:
            run = client.get_run(done["id"])
    finally:
        ws.stop_agents()
        server.stop()
    assert done["result"] == 41
    # The same execution, attempt 1 (no retry used), started once.
    run_id = done["id"]
    executions = [[e["id"] for e in s["executions"]] for s in run["steps"]]
    assert executions == [[f"{run_id}:1:1"], [f"{run_id}:2:1"]]
    assert journal(tmp_path / "journal.jsonl") == Counter(
        {("quick", "start"): 1, ("quick", "end"): 1}
    )
    assert "failpoint execute.before_start: drop:1" in ws.agent_log()
    log = server.log_path.read_text()
    assert log.count("re-dispatching") == 1
    assert f"re-dispatching {done['id']}:1:1, which never started" in log
    assert seconds >= 1.0  # assigned again only after the start timeout
    assert_healthy(server)


def test_s09_a_second_connection_of_a_session_replaces_the_first(tmp_path: Path) -> None:
    """An agent's session connects again while its old connection still looks
    open: the old one is closed with 4409, what the agent runs stays with it."""
    with two_agents(tmp_path) as (server, ws, far, _, journal):
        submitted = ws.cli_json("submit", "wf.py", "run_gated", str(journal))
        wait_until(lambda: len(starts(journal)) == 1)
        with far.client() as client:
            run = client.get_run(submitted["id"])
            task = run["steps"][1]["executions"][0]["id"]
            agent = next(a for a in client.list_agents() if a["repositories"] == ["tasks"])
        url = f"{far.server.replace('http', 'ws')}/api/projects/{far.project}/agent"

        async def duplicate() -> tuple[dict[str, Any], int | None]:
            async with websockets.connect(url) as sock:
                hello = {
                    "session_id": agent["session_id"],
                    "environment": "production",
                    "repositories": ["tasks"],
                    "concurrency": 4,
                    "executions": [task],
                }
                await sock.send(json.dumps({"id": 0, "method": "hello", "params": hello}))
                reply = json.loads(await sock.recv())
                # The real agent, its connection closed, connects again and
                # replaces this one in turn.
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(sock.recv(), timeout=10)
                return reply, sock.close_code

        reply, code = asyncio.run(duplicate())
        assert reply["result"]["session_id"] == agent["session_id"]
        assert code == 4409
        wait_until(lambda: "replaced by a newer connection" in far.agent_log())
        (journal / "gate").touch()
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=10)
            run = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert [e["state"] for e in run["steps"][1]["executions"]] == ["succeeded"]
        assert run["steps"][1]["executions"][0]["value"]["data"] == "released 1"
        assert len(starts(journal)) == 1
        assert "re-dispatching" not in server.log_path.read_text()
        assert_healthy(server)


RACING_TASKS = """
    import json
    import os
    import time
    import coflux as cf

    @cf.task()
    def quick(journal: str, i: int) -> int:
        time.sleep(0.01)  # long enough that the links are cut while tasks run
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (json.dumps({"i": i, "pid": os.getpid()}) + "\\n").encode())
        finally:
            os.close(fd)
        return i
"""

RACING_WORKFLOWS = """
    import coflux as cf
    from tasks import quick

    @cf.workflow()
    def fan(journal: str, n: int) -> int:
        calls = [quick.submit(journal, i) for i in range(n)]
        return sum(c.result() for c in calls)
"""


def test_s09_agents_racing_through_flaky_links_start_each_execution_once(
    tmp_path: Path,
) -> None:
    """Four agents (concurrency 2) behind proxies, one of which drops its
    connections for 0.2 s every 0.3 s, share 500 tasks."""
    import random
    import threading

    from proxy import Proxy

    log = tmp_path / "journal.jsonl"
    with private_stack(tmp_path, agent_timeout=2) as (server, ws):
        ws.write("tasks.py", RACING_TASKS)
        ws.write("wf.py", RACING_WORKFLOWS)
        ws.start_agent("wf.py")
        proxies = [Proxy(server.port) for _ in range(4)]
        racers = []
        for n, proxy in enumerate(proxies):
            racer = Workspace(tmp_path / f"racer{n}", proxy.url, ws.project)
            racer.root.mkdir()
            racer.write("tasks.py", RACING_TASKS)
            racer.start_agent("tasks.py", concurrency=2, wait=False)
            racers.append(racer)
        ws.wait_for_agents(5)
        stop = threading.Event()

        drops = []

        def chaos() -> None:  # a link down for 0.2 s of every 0.3 s, from the start
            while not stop.is_set():
                proxy = random.choice(proxies)
                drops.append(proxy.port)
                proxy.drop()
                time.sleep(0.2)
                proxy.heal()
                stop.wait(0.1)

        thread = threading.Thread(target=chaos, daemon=True)
        thread.start()
        try:
            started = time.monotonic()
            done = ws.cli(
                "submit", "wf.py", "fan", str(log), "500", "--wait", "--json", timeout=120
            )
            seconds = time.monotonic() - started
        finally:
            stop.set()
            thread.join()
            for racer in racers:
                racer.stop_agents()
            for proxy in proxies:
                proxy.close()
        assert done.returncode == 0, done.stderr
        assert len(drops) >= 3  # the links really were cut while the tasks ran
        assert json.loads(done.stdout)["result"] == sum(range(500))
        counts = Counter(json.loads(line)["i"] for line in log.read_text().splitlines())
        assert counts == Counter(range(500)), {i: c for i, c in counts.items() if c != 1}
        with ws.client() as client:
            run = client.get_run(json.loads(done.stdout)["id"])
        assert [len(s["executions"]) for s in run["steps"]] == [1] * 501
        Path(tmp_path / "seconds").write_text(f"{seconds:.1f}")
        assert_healthy(server)
