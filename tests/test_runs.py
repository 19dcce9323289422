"""Runs end to end: a real server, real agent processes, the real CLI."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from conftest import Workspace, private_stack, wait_until

WORKFLOWS = """
    import time
    import coflux as cf

    @cf.task()
    def add(a: int, b: int) -> int:
        return a + b

    @cf.workflow()
    def chain(n: int) -> int:
        total = 0
        for i in range(n):
            total = add(total, i)
        return total

    @cf.task()
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @cf.workflow()
    def parallel(seconds: float) -> list:
        naps = [nap.submit(seconds), nap.submit(seconds)]
        return [e.result() for e in naps]

    class Overdrawn(Exception):
        pass

    @cf.task()
    def withdraw(amount: int) -> int:
        raise Overdrawn(f"cannot withdraw {amount}")

    @cf.workflow()
    def bank(amount: int) -> str:
        try:
            withdraw(amount)
        except Overdrawn as e:
            return f"caught {type(e).__name__}: {e}"
        return "no error"

    @cf.workflow()
    def failing(amount: int) -> int:
        return withdraw(amount)

    @cf.task()
    def make_set(n: int) -> set:
        return set(range(n))

    @cf.workflow()
    def pickled(n: int) -> set:
        return make_set(n)

    @cf.task()
    def big(n: int) -> str:
        return "x" * n

    @cf.workflow()
    def sized(n: int) -> int:
        return len(big(n))

    @cf.task()
    def chatty(name: str) -> str:
        print(f"printing for {name}")
        cf.log_info("processing {name}", name=name)
        cf.log_warning("careful with {count} items", count=3)
        return name.upper()

    @cf.workflow()
    def talk(name: str) -> str:
        return chatty(name)

    @cf.task()
    def double(x: int) -> int:
        return x * 2

    @cf.task(wait=True)
    def plus_one(x: cf.Execution[int]) -> int:
        return x.result() + 1

    @cf.task()
    def square(x: int) -> int:
        return x * x

    @cf.workflow()
    def gather_some(n: int) -> int:
        executions = [square.submit(i) for i in range(n)]
        time.sleep(1)  # the squares end meanwhile: their outcomes are sent here as they do
        return sum(e.result() for e in executions[::2])

    @cf.workflow()
    def trickle(n: int) -> int:
        executions = []
        for i in range(n):
            executions.append(square.submit(i))
            time.sleep(0.003)  # a new step every few milliseconds
        return sum(e.result() for e in executions)

    @cf.workflow()
    def passing(x: int) -> int:
        doubled = double.submit(x)
        return plus_one.submit(doubled).result()

    @cf.workflow()
    def handing_back(x: int) -> cf.Execution[int]:
        return double.submit(x)
"""


def submit_wait(ws: Workspace, target: str, *args: str) -> dict:
    result = ws.cli("submit", "flows.py", target, *args, "--wait", "--json", timeout=60)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_chain_of_task_calls(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = submit_wait(workspace, "chain", "10")
    assert run["state"] == "succeeded"
    assert run["result"] == 45
    assert run["workflow"] == "flows:chain"
    assert [s["target"] for s in run["steps"]] == ["flows:chain"] + ["flows:add"] * 10
    root = run["steps"][0]["executions"][0]["id"]
    assert all(s["parent"] == root for s in run["steps"][1:])
    assert [s["executions"][0]["result"] for s in run["steps"][1:]] == [
        0,
        1,
        3,
        6,
        10,
        15,
        21,
        28,
        36,
        45,
    ]


def test_two_sleeping_tasks_run_in_parallel(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py", concurrency=4)
    submit_wait(workspace, "parallel", "0.01")  # warm the execution processes
    run = submit_wait(workspace, "parallel", "1")
    assert run["result"] == [1, 1]
    from datetime import datetime

    naps = [s["executions"][0] for s in run["steps"][1:]]
    # They overlapped: each started before the other finished.
    last_start = max(datetime.fromisoformat(e["started_at"]) for e in naps)
    first_end = min(datetime.fromisoformat(e["finished_at"]) for e in naps)
    assert last_start < first_end


def test_s25_an_error_reaches_the_caller_with_its_type(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = submit_wait(workspace, "bank", "100")
    assert run["result"] == "caught Overdrawn: cannot withdraw 100"

    result = workspace.cli("submit", "flows.py", "failing", "5", "--wait", "--json")
    assert result.returncode == 1
    run = json.loads(result.stdout)
    assert run["state"] == "failed"
    error = run["steps"][0]["executions"][0]["error"]
    assert error["type"] == "flows.Overdrawn"
    assert error["message"] == "cannot withdraw 5"
    assert "raise Overdrawn" in error["traceback"]
    child = run["steps"][1]["executions"][0]
    assert child["state"] == "failed"
    assert child["error"]["type"] == "flows.Overdrawn"
    # From the user's code down: the runner's frames above it are left out.
    source = workspace.root / "flows.py"
    line = [
        n for n, text in enumerate(source.read_text().splitlines(), 1) if "raise Overdrawn" in text
    ]
    assert child["error"]["traceback"].splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{source}", line {line[0]}, in withdraw',
        '    raise Overdrawn(f"cannot withdraw {amount}")',
        "flows.Overdrawn: cannot withdraw 5",
    ]


def test_a_non_json_result_is_pickled_and_shown_by_type_and_repr(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = submit_wait(workspace, "pickled", "3")
    assert run["state"] == "succeeded"
    assert run["result"] == {"$type": "set", "repr": "{0, 1, 2}"}


def test_a_large_result_goes_through_the_blob_store(workspace: Workspace, server) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = submit_wait(workspace, "sized", "5000")
    assert run["result"] == 5000
    big = run["steps"][1]["executions"][0]
    assert big["result"] == "x" * 5000
    blobs = list((server.data_dir / "blobs" / workspace.project).rglob("*"))
    blob_files = [p for p in blobs if p.is_file() and len(p.name) == 32]
    assert len(blob_files) == 1
    assert blob_files[0].read_bytes() == json.dumps("x" * 5000).encode()


def test_printed_output_and_log_messages_are_shown_by_logs(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = submit_wait(workspace, "talk", "ada")
    assert run["result"] == "ADA"
    messages = workspace.cli_json("logs", run["id"])
    assert [(m["level"], m["message"]) for m in messages] == [
        ("stdout", "printing for ada"),
        ("info", "processing ada"),
        ("warning", "careful with 3 items"),
    ]
    assert {m["execution_id"] for m in messages} == {f"{run['id']}:2:1"}
    text = workspace.cli("logs", f"{run['id']}:2", check=True).stdout
    assert "printing for ada" in text and "processing ada" in text


def test_executions_passed_as_arguments_and_waited_for(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = submit_wait(workspace, "passing", "20")
    assert run["result"] == 41
    doubled, plus = run["steps"][1], run["steps"][2]
    assert plus["target"] == "flows:plus_one"
    # plus_one waited: it started only after double finished.
    assert plus["executions"][0]["started_at"] >= doubled["executions"][0]["finished_at"]

    run = submit_wait(workspace, "handing_back", "4")
    reference = f"{run['id']}:2:1"
    assert run["result"] == {
        "$type": "coflux.Execution",
        "repr": f"Execution({reference!r})",
        "id": reference,
    }
    assert run["steps"][1]["executions"][0]["result"] == 8


def test_outcomes_read_by_a_workflow_are_its_dependencies(workspace: Workspace) -> None:
    """A workflow reads the outcomes of the steps it submitted where it runs (they
    are sent to it as the steps end); the ones it read, and only those, are
    recorded as what it depends on."""
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = submit_wait(workspace, "gather_some", "6")
    assert run["result"] == 0 + 4 + 16
    assert [s["target"] for s in run["steps"][1:]] == ["flows:square"] * 6
    response = httpx.get(
        f"{workspace.server}/api/projects/{workspace.project}/runs/{run['id']}/export"
    )
    dependencies = response.json()["dependencies"]
    caller = f"{run['id']}:1:1"
    assert sorted(d["dependency"] for d in dependencies) == [
        f"{run['id']}:{n}:1" for n in (2, 4, 6)
    ]
    assert {d["execution"] for d in dependencies} == {caller}


def test_a_run_read_while_it_grows_never_fails(workspace: Workspace) -> None:
    """Steps are committed while a run is read: every read answers 200 with a
    consistent run (each execution under a step), never a 500."""
    import threading

    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    run = workspace.cli_json("submit", "flows.py", "trickle", "400")
    url = f"{workspace.server}/api/projects/{workspace.project}/runs/{run['id']}"
    statuses: list[int] = []

    def read() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                response = client.get(url)
                statuses.append(response.status_code)
                if response.status_code == 200 and response.json()["state"] != "running":
                    return

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert set(statuses) == {200}
    # The reads really overlapped the new steps (148 here; a slower
    # machine reads fewer, each read of a larger run).
    assert len(statuses) > 30


def test_runs_list_and_show_json_contract(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    submitted = workspace.cli_json("submit", "flows.py", "chain", "2")
    assert set(submitted) == {"id", "url"}
    assert submitted["url"] == (
        f"{workspace.server}/projects/{workspace.project}/runs/{submitted['id']}?env=production"
    )
    with workspace.client() as client:
        wait_until(lambda: client.get_run(submitted["id"])["state"] == "succeeded")
    runs = workspace.cli_json("runs", "list")
    assert len(runs) == 1
    assert set(runs[0]) == {"id", "workflow", "environment", "state", "created_at", "url"}
    assert runs[0]["url"] == submitted["url"]
    assert runs[0]["id"] == submitted["id"]
    assert (runs[0]["workflow"], runs[0]["environment"], runs[0]["state"]) == (
        "flows:chain",
        "production",
        "succeeded",
    )
    run = workspace.cli_json("runs", "show", submitted["id"])
    assert set(run) == {
        "id",
        "url",
        "project",
        "environment",
        "view",
        "workflow",
        "state",
        "result",
        "steps",
    }
    assert (run["project"], run["environment"], run["view"], run["result"]) == (
        workspace.project,
        "production",
        "production",
        1,
    )
    step = run["steps"][1]
    assert set(step) == {"id", "target", "parent", "state", "reused_from", "executions"}
    assert (step["state"], step["reused_from"]) == ("succeeded", None)
    assert step["id"] == f"{submitted['id']}:2"
    execution = step["executions"][0]
    assert set(execution) == {
        "id",
        "environment",
        "state",
        "result",
        "error",
        "reused_from",
        "created_at",
        "started_at",
        "finished_at",
        "commit",
        "dirty",
    }
    assert execution["id"] == f"{submitted['id']}:2:1"
    assert execution["created_at"].endswith("+00:00")
    assert execution["reused_from"] is None and execution["error"] is None
    page = httpx.get(submitted["url"])
    assert page.status_code == 200
    assert f"Run {submitted['id']} · flows:chain" in page.text and "succeeded" in page.text


def test_envs_and_projects_from_the_cli(workspace: Workspace) -> None:
    workspace.cli("envs", "create", "staging", "--base", "production", check=True)
    assert workspace.cli_json("envs", "list") == [
        {"name": "production", "base": None},
        {"name": "staging", "base": "production"},
    ]
    assert {"name": workspace.project} in workspace.cli_json("projects", "list")


def test_cancel_a_run(workspace: Workspace) -> None:
    workspace.write("flows.py", WORKFLOWS)
    workspace.start_agent("flows.py")
    submitted = workspace.cli_json("submit", "flows.py", "parallel", "30")
    with workspace.client() as client:
        wait_until(lambda: len(client.get_run(submitted["id"])["steps"]) == 3)
        assert workspace.cli("cancel", submitted["id"], check=True).returncode == 0
        run = client.get_run(submitted["id"])
    assert run["state"] == "cancelled"
    assert [s["executions"][0]["state"] for s in run["steps"]] == ["cancelled"] * 3


def test_s04_agent_reconnects_after_a_server_restart(tmp_path) -> None:
    with private_stack(tmp_path) as (private, ws):
        ws.write("flows.py", WORKFLOWS)
        ws.start_agent("flows.py")
        assert submit_wait(ws, "chain", "3")["result"] == 3
        private.kill()
        time.sleep(0.5)
        private.start()
        ws.wait_for_agents(1)
        run = submit_wait(ws, "chain", "4")
        assert (run["state"], run["result"]) == ("succeeded", 6)
        assert len(ws.cli_json("runs", "list")) == 2


CRASHES = """
    import os
    import signal
    import coflux as cf

    @cf.task()
    def die(code: int) -> int:
        os._exit(code)

    @cf.task()
    def kill_self() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    @cf.task()
    def fine() -> str:
        return "still serving"

    @cf.workflow()
    def crash(kind: str) -> list:
        try:
            die(3) if kind == "exit" else kill_self()
        except cf.ExecutionError as e:
            return [type(e).__name__, str(e), fine()]
        return ["no error"]
"""


def test_s02_a_task_that_takes_its_process_down_fails_and_the_agent_serves_on(
    workspace: Workspace,
) -> None:
    workspace.write("crashes.py", CRASHES)
    agent = workspace.start_agent("crashes.py")
    result = workspace.cli("submit", "crashes.py", "crash", "exit", "--wait", "--json", check=True)
    run = json.loads(result.stdout)
    assert run["result"] == ["ExecutionError", "process exited with code 3", "still serving"]
    assert run["steps"][1]["executions"][0]["error"]["message"] == "process exited with code 3"
    result = workspace.cli("submit", "crashes.py", "crash", "kill", "--wait", "--json", check=True)
    assert json.loads(result.stdout)["result"] == [
        "ExecutionError",
        "killed by signal 9",
        "still serving",
    ]
    assert agent.poll() is None


def test_the_shared_server_is_durable_by_default(server: Any, workspace: Workspace) -> None:
    """WAL with synchronous=FULL: an acknowledged change survives power loss."""
    import sqlite3

    if server.database_url:
        pytest.skip("SQLite's setting; this suite's servers are on PostgreSQL")

    assert httpx.get(f"{server.url}/api/health").json()["synchronous"] == "FULL"
    with workspace.client() as client:
        client.list_environments()  # opens the project's database
    path = server.data_dir / "projects" / f"{workspace.project}.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
