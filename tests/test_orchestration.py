"""Orchestration semantics through a real server and agents: cache, memo, retries, delay,
cancellation and abandonment, each with exact counts."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from conftest import Workspace, private_stack, wait_until

FLOWS = """
    import os
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task(cache=True)
    def fib(n: int) -> int:
        if n < 2:
            return n
        return fib(n - 1) + fib(n - 2)

    @cf.workflow()
    def run_fib(n: int) -> int:
        return fib(n)

    def count(journal: str, name: str) -> int:
        path = Path(journal) / name
        with open(path, "a") as f:
            f.write("x")
        return path.stat().st_size

    @cf.task(cache=True, cache_params="key")
    def lookup(key: str, note: str, journal: str) -> str:
        count(journal, "lookup-" + key)
        return key.upper()

    @cf.task(cache=1)
    def fresh(journal: str) -> int:
        return count(journal, "fresh")

    @cf.workflow()
    def lookups(keys: list, note: str, journal: str) -> list:
        return [lookup(k, note, journal) for k in keys]

    @cf.workflow()
    def freshness(journal: str) -> int:
        return fresh(journal)

    @cf.task(memo=True)
    def expensive(x: int, journal: str) -> int:
        count(journal, "expensive")
        return x * 10

    @cf.workflow()
    def memoised(journal: str) -> list:
        first = expensive.submit(1, journal)
        second = expensive.submit(1, journal)
        return [first.result(), second.result(), first.id == second.id, expensive(2, journal)]

    @cf.task(retries=2)
    def flaky(journal: str) -> str:
        attempt = count(journal, "flaky")
        if attempt < 3:
            raise RuntimeError(f"attempt {attempt} failed")
        return f"succeeded on attempt {attempt}"

    @cf.workflow()
    def retrying(journal: str) -> str:
        return flaky(journal)

    @cf.task(retries=(1, 0.5))
    def always_fails(journal: str) -> str:
        count(journal, "always")
        raise ValueError("never works")

    @cf.workflow()
    def giving_up(journal: str) -> str:
        try:
            return always_fails(journal)
        except ValueError as e:
            return f"gave up: {e}"

    @cf.task(delay=1)
    def later() -> str:
        return "done"

    @cf.workflow()
    def delayed() -> str:
        return later()

    @cf.task()
    def slow(seconds: float, journal: str) -> str:
        Path(journal, "slow-start").write_text(str(os.getpid()))
        time.sleep(seconds)
        Path(journal, "slow-end").write_text("end")
        return "finished"

    @cf.workflow()
    def waits(seconds: float, journal: str) -> str:
        return slow(seconds, journal)

    @cf.workflow()
    def inner(x: int) -> int:
        return x * 3

    @cf.task()
    def spawner(x: int) -> int:
        return inner(x) + 1

    @cf.workflow()
    def outer(x: int) -> int:
        return spawner(x)

    @cf.workflow()
    def cancelling(journal: str) -> str:
        execution = slow.submit(30, journal)
        while not Path(journal, "slow-start").exists():
            time.sleep(0.01)
        execution.cancel()
        try:
            execution.result()
        except cf.Cancelled as e:
            return f"cancelled: {e}"
        return "not cancelled"

    @cf.workflow(retries=1)
    def survive(journal: str) -> str:
        attempt = count(journal, "guarded")
        Path(journal, f"guarded-start-{attempt}").write_text(str(os.getpid()))
        if attempt == 1:
            time.sleep(60)
        return f"attempt {attempt}"
"""


def run(ws: Workspace, target: str, *args: str) -> dict:
    result = ws.cli("submit", "flows.py", target, *args, "--wait", "--json", timeout=90)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def states(run: dict, target: str) -> list[list[str]]:
    return [[e["state"] for e in s["executions"]] for s in run["steps"] if s["target"] == target]


def test_fib_with_cache_executes_each_n_once(workspace: Workspace) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py", concurrency=4)
    result = run(workspace, "run_fib", "12")
    assert result["result"] == 144
    fibs = [s for s in result["steps"] if s["target"] == "flows:fib"]
    counts = Counter(s["executions"][0]["state"] for s in fibs)
    assert counts == {"succeeded": 13, "cached": 10}
    executed = {
        s["executions"][0]["id"]: s for s in fibs if s["executions"][0]["state"] == "succeeded"
    }
    for step in fibs:
        execution = step["executions"][0]
        if execution["state"] == "cached":
            source = executed[execution["reused_from"]]
            assert source["executions"][0]["result"] == execution["result"]


def test_cache_across_runs_by_selected_parameters(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    journal = str(tmp_path)
    first = run(workspace, "lookups", '["a", "b"]', "first", journal)
    assert first["result"] == ["A", "B"]
    # A different note is not a cache parameter: both lookups hit the cache.
    second = run(workspace, "lookups", '["a", "b", "a"]', "second", journal)
    assert second["result"] == ["A", "B", "A"]
    assert states(second, "flows:lookup") == [["cached"], ["cached"], ["cached"]]
    first_ids = [s["executions"][0]["id"] for s in first["steps"][1:]]
    assert [s["executions"][0]["reused_from"] for s in second["steps"][1:]] == [
        first_ids[0],
        first_ids[1],
        first_ids[0],
    ]
    assert (tmp_path / "lookup-a").read_text() == "x"
    assert (tmp_path / "lookup-b").read_text() == "x"


def test_memo_refers_to_the_existing_step(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    result = run(workspace, "memoised", str(tmp_path))
    assert result["result"] == [10, 10, True, 20]
    assert [s["target"] for s in result["steps"]] == [
        "flows:memoised",
        "flows:expensive",
        "flows:expensive",
    ]
    assert (tmp_path / "expensive").read_text() == "xx"  # x=1 once, x=2 once


def test_retries_until_success_and_callers_get_the_final_outcome(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    result = run(workspace, "retrying", str(tmp_path))
    assert result["result"] == "succeeded on attempt 3"
    assert states(result, "flows:flaky") == [["failed", "failed", "succeeded"]]
    errors = [e["error"] for e in result["steps"][1]["executions"]]
    assert [e["message"] if e else None for e in errors] == [
        "attempt 1 failed",
        "attempt 2 failed",
        None,
    ]

    result = run(workspace, "giving_up", str(tmp_path))
    assert result["result"] == "gave up: never works"
    assert states(result, "flows:always_fails") == [["failed", "failed"]]
    attempts = result["steps"][1]["executions"]
    gap = datetime.fromisoformat(attempts[1]["started_at"]) - datetime.fromisoformat(
        attempts[0]["finished_at"]
    )
    assert gap.total_seconds() >= 0.5


def test_delay_holds_an_execution_in_queued(workspace: Workspace) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    result = run(workspace, "delayed")
    assert result["result"] == "done"
    execution = result["steps"][1]["executions"][0]
    held = datetime.fromisoformat(execution["started_at"]) - datetime.fromisoformat(
        execution["created_at"]
    )
    assert held.total_seconds() >= 1.0


def test_s22_a_cancelled_task_never_reaches_its_end(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    submitted = workspace.cli_json("submit", "flows.py", "waits", "8", str(tmp_path))
    wait_until(lambda: (tmp_path / "slow-start").exists())
    pid = int((tmp_path / "slow-start").read_text())
    workspace.cli("cancel", submitted["id"], check=True)
    with workspace.client() as client:
        result = client.get_run(submitted["id"])
    assert result["state"] == "cancelled"
    assert [e["state"] for s in result["steps"] for e in s["executions"]] == ["cancelled"] * 2
    # Once its process is gone nothing can write the task's end, and no retry
    # was made (the states above): the end was never reached.
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)
    assert not (tmp_path / "slow-end").exists()


def test_s01_an_agent_killed_mid_task_is_abandoned_and_the_retry_runs_elsewhere(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    with private_stack(tmp_path, agent_timeout=3) as (server, ws):
        ws.write("flows.py", FLOWS)
        first = ws.start_agent("flows.py")
        submitted = ws.cli_json("submit", "flows.py", "survive", str(journal))
        wait_until(lambda: (journal / "guarded-start-1").exists())
        ws.start_agent("flows.py")
        os.killpg(first.pid, signal.SIGKILL)
        with ws.client() as client:

            def abandoned() -> bool:
                run = client.get_run(submitted["id"])
                return run["steps"][0]["executions"][0]["state"] == "abandoned"

            wait_until(abandoned, timeout=20, interval=0.05)
            final = client.wait_for_run(submitted["id"], timeout=20)
            result = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        executions = result["steps"][0]["executions"]
        assert [e["state"] for e in executions] == ["abandoned", "succeeded"]
        assert executions[1]["value"]["data"] == "attempt 2"
        assert (journal / "guarded").read_text() == "xx"


def test_a_workflow_called_from_a_task_is_spawned_as_its_own_run(workspace: Workspace) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    result = run(workspace, "outer", "5")
    assert result["result"] == 16
    assert [s["target"] for s in result["steps"]] == ["flows:outer", "flows:spawner"]
    runs = workspace.cli_json("runs", "list")
    assert [r["workflow"] for r in runs] == ["flows:inner", "flows:outer"]
    spawned = workspace.cli_json("runs", "show", runs[0]["id"])
    assert spawned["result"] == 15
    assert spawned["steps"][0]["parent"] == f"{result['id']}:2:1"


def test_execution_cancel_from_a_workflow(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    result = run(workspace, "cancelling", str(tmp_path))
    slow_ref = f"{result['id']}:2:1"
    assert result["result"] == f"cancelled: execution {slow_ref} was cancelled"
    assert states(result, "flows:slow") == [["cancelled"]]
    assert not (tmp_path / "slow-end").exists()


MORE = """
    import time
    from pathlib import Path
    import coflux as cf

    def count(journal: str, name: str) -> int:
        path = Path(journal) / name
        with open(path, "a") as f:
            f.write("x")
        return path.stat().st_size

    @cf.task(defer=True, delay=0.5)
    def notify(topic: str, journal: str) -> str:
        count(journal, "notify-" + topic)
        return "notified " + topic

    @cf.workflow()
    def debounced(journal: str) -> list:
        first = notify.submit("a", journal)
        second = notify.submit("a", journal)
        other = notify.submit("b", journal)
        return [first.result(), second.result(), other.result()]

    @cf.task()
    def step_one(journal: str) -> int:
        return count(journal, "one")

    @cf.workflow()
    def suspending(journal: str) -> list:
        done = step_one(journal)
        attempt = count(journal, "suspending")
        if attempt == 1:
            cf.suspend(0.3)
        return [done, attempt]

    @cf.task()
    def slowish(seconds: float) -> str:
        time.sleep(seconds)
        return "ready"

    @cf.workflow()
    def patient(journal: str) -> list:
        attempt = count(journal, "patient")
        pending = slowish.submit(1.0)
        with cf.suspense(0.2):
            value = pending.result()
        return [value, attempt]

    @cf.stub("other")
    def remote_double(x: int) -> int:
        return -1

    @cf.workflow()
    def via_stub(x: int) -> int:
        return remote_double(x) + 1
"""

SENSORS = """
    from pathlib import Path
    import coflux as cf

    @cf.sensor()
    def watch(cursor: int, journal: str) -> None:
        # Each start handles two items, checkpointing after each, then ends.
        for _ in range(2):
            cursor += 1
            with open(Path(journal) / "seen", "a") as f:
                f.write(f"{cursor},")
            cf.checkpoint(cursor, journal)
"""

OTHER = """
    import coflux as cf

    @cf.task()
    def remote_double(x: int) -> int:
        return x * 2
"""


def test_defer_replaces_a_call_that_has_not_started(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write("more.py", MORE)
    workspace.start_agent("more.py")
    result = json.loads(
        workspace.cli("submit", "more.py", "debounced", str(tmp_path), "--wait", "--json").stdout
    )
    assert result["result"] == ["notified a", "notified a", "notified b"]
    assert [[e["state"] for e in s["executions"]] for s in result["steps"][1:]] == [
        ["deferred"],
        ["succeeded"],
        ["succeeded"],
    ]
    assert (tmp_path / "notify-a").read_text() == "x"


def test_suspend_runs_the_step_again_and_reuses_its_calls(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.write("more.py", MORE)
    workspace.start_agent("more.py")
    result = json.loads(
        workspace.cli("submit", "more.py", "suspending", str(tmp_path), "--wait", "--json").stdout
    )
    assert result["result"] == [1, 2]
    executions = result["steps"][0]["executions"]
    assert [e["state"] for e in executions] == ["suspended", "succeeded"]
    resumed = datetime.fromisoformat(executions[1]["started_at"])
    suspended = datetime.fromisoformat(executions[0]["started_at"])
    assert (resumed - suspended).total_seconds() >= 0.3  # cf.suspend(0.3) was called after start
    assert len(result["steps"]) == 2  # step_one was called once, its step reused
    assert (tmp_path / "one").read_text() == "x"


def test_suspense_suspends_until_the_result_is_ready(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write("more.py", MORE)
    workspace.start_agent("more.py")
    result = json.loads(
        workspace.cli("submit", "more.py", "patient", str(tmp_path), "--wait", "--json").stdout
    )
    assert result["result"] == ["ready", 2]
    assert [e["state"] for e in result["steps"][0]["executions"]] == ["suspended", "succeeded"]
    assert [s["target"] for s in result["steps"]] == ["more:patient", "more:slowish"]
    slow = result["steps"][1]["executions"][0]
    resumed = result["steps"][0]["executions"][1]
    assert resumed["started_at"] >= slow["finished_at"]


def test_a_stub_calls_a_target_hosted_by_another_agent(workspace: Workspace) -> None:
    workspace.write("more.py", MORE)
    workspace.write("other.py", OTHER)
    workspace.start_agent("more.py")
    workspace.start_agent("other.py")
    result = json.loads(
        workspace.cli("submit", "more.py", "via_stub", "20", "--wait", "--json").stdout
    )
    assert result["result"] == 41
    assert result["steps"][1]["target"] == "other:remote_double"


def test_a_sensor_is_kept_running_from_its_last_checkpoint(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.write("sensors.py", SENSORS)
    workspace.start_agent("sensors.py")
    started = workspace.cli_json("sensors", "start", "sensors.py", "watch", "0", str(tmp_path))
    seen = tmp_path / "seen"
    wait_until(lambda: seen.exists() and seen.read_text().count(",") >= 6, timeout=10)
    workspace.cli("sensors", "stop", started["id"], check=True)
    time.sleep(1.5)  # a fixed window: a stopped sensor is not restarted
    values = [int(v) for v in seen.read_text().strip(",").split(",")]
    assert values == list(range(1, len(values) + 1))  # each start resumed from its checkpoint
    with workspace.client() as client:
        run = client.get_run(started["id"])
    executions = run["steps"][0]["executions"]
    assert run["state"] == "cancelled"
    assert [e["state"] for e in executions[:-1]] == ["succeeded"] * (len(executions) - 1)
    assert executions[-1]["state"] == "cancelled"
    starts = [datetime.fromisoformat(e["started_at"]) for e in executions if e["started_at"]]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps)  # restarts are rate-limited to one a second


def test_sensors_start_refuses_a_workflow(workspace: Workspace) -> None:
    workspace.write("more.py", MORE)
    workspace.cli("register", "more.py", check=True)
    result = workspace.cli("sensors", "start", "more.py", "via_stub", "1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: more:via_stub is a workflow; start workflows with `coflux submit`"
    )


def test_rerunning_a_cached_step_forces_execution_and_later_hits_use_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    journal = str(tmp_path)
    first = run(workspace, "lookups", '["a"]', "n", journal)
    second = run(workspace, "lookups", '["a"]', "n", journal)
    assert states(second, "flows:lookup") == [["cached"]]
    result = workspace.cli("rerun", f"{second['id']}:2", "--wait", "--json", check=True)
    rerun = json.loads(result.stdout)
    executions = rerun["steps"][1]["executions"]
    assert [e["state"] for e in executions] == ["cached", "succeeded"]
    assert executions[1]["id"] == f"{second['id']}:2:2"
    assert (tmp_path / "lookup-a").read_text() == "xx"  # executed again by the re-run
    third = run(workspace, "lookups", '["a"]', "n", journal)
    assert third["steps"][1]["executions"][0]["reused_from"] == f"{second['id']}:2:2"
    assert first["steps"][1]["executions"][0]["state"] == "succeeded"


def test_memo_hits_survive_a_rerun_of_the_calling_step(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    first = run(workspace, "memoised", str(tmp_path))
    result = workspace.cli("rerun", f"{first['id']}:1", "--wait", "--json", check=True)
    rerun = json.loads(result.stdout)
    assert rerun["result"] == [10, 10, True, 20]
    assert [len(s["executions"]) for s in rerun["steps"]] == [2, 1, 1]
    assert (tmp_path / "expensive").read_text() == "xx"  # nothing executed again


def test_s06_an_agent_that_reconnects_in_time_keeps_its_running_execution(tmp_path: Path) -> None:
    """The server restarts while a task runs; the agent reconnects within the
    timeout, keeps the execution, and its result is accepted: one execution, no retry."""
    journal = tmp_path / "journal"
    journal.mkdir()
    with private_stack(tmp_path, agent_timeout=5) as (server, ws):
        ws.write("flows.py", FLOWS)
        ws.start_agent("flows.py")
        submitted = ws.cli_json("submit", "flows.py", "waits", "2", str(journal))
        wait_until(lambda: (journal / "slow-start").exists())
        server.kill()
        server.start()
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=20)
            result = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert [[e["state"] for e in s["executions"]] for s in result["steps"]] == [
            ["succeeded"],
            ["succeeded"],
        ]
        assert result["steps"][1]["executions"][0]["value"]["data"] == "finished"


def test_s08_an_agent_that_loses_the_server_fences_its_tasks_before_they_are_retried(
    tmp_path: Path,
) -> None:
    """I2: the server is frozen (SIGSTOP) mid-task; within 0.75 x the timeout the
    agent kills the task's process, before the server (resumed) abandons it and
    runs the retry, so the two attempts never overlap."""
    journal = tmp_path / "journal"
    journal.mkdir()
    with private_stack(tmp_path, agent_timeout=2) as (server, ws):
        ws.write("flows.py", FLOWS)
        ws.start_agent("flows.py")
        submitted = ws.cli_json("submit", "flows.py", "survive", str(journal))
        wait_until(lambda: (journal / "guarded-start-1").exists())
        pid = int((journal / "guarded-start-1").read_text())
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=4, interval=0.05)
            fenced_after = time.monotonic() - frozen
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert 1.2 <= fenced_after <= 2.5  # 0.75 x 2 s, give or take a heartbeat
        assert "fenced: lost contact with server for" in ws.agent_log()
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=20)
            result = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        executions = result["steps"][0]["executions"]
        assert [e["state"] for e in executions] == ["abandoned", "succeeded"]
        assert executions[1]["value"]["data"] == "attempt 2"


def test_agent_protocol_batches_only_for_agents_that_ask(workspace: Workspace) -> None:
    """A frame may carry a JSON array of requests; the server answers with an
    array only when the agent's hello said ``batches``."""
    import asyncio

    import websockets

    url = workspace.server.replace("http", "ws", 1) + f"/api/projects/{workspace.project}/agent"

    async def exchange(batches: bool) -> list[object]:
        async with websockets.connect(url, compression=None) as ws:
            hello = {
                "id": 0,
                "method": "hello",
                "params": {
                    "session_id": f"s-{batches}",
                    "environment": "production",
                    "concurrency": 1,
                    "batches": batches,
                },
            }
            await ws.send(json.dumps(hello))
            frames = [json.loads(await ws.recv())]
            requests = [
                {"id": i, "method": "heartbeat", "params": {"executions": []}} for i in (1, 2, 3)
            ]
            await ws.send(json.dumps(requests))
            seen: set[int] = set()
            while seen != {1, 2, 3}:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                frames.append(frame)
                seen |= {m["id"] for m in (frame if isinstance(frame, list) else [frame])}
            return frames

    plain = asyncio.run(exchange(False))
    assert all(isinstance(frame, dict) for frame in plain)
    assert [frame["id"] for frame in plain] == [0, 1, 2, 3]
    assert all(frame["result"] == {} for frame in plain[1:])
    batched = asyncio.run(exchange(True))
    flat = [m for f in batched for m in (f if isinstance(f, list) else [f])]
    assert [m["id"] for m in flat] == [0, 1, 2, 3]
    assert any(isinstance(frame, list) for frame in batched), batched
