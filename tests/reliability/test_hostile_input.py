"""Fault scenarios of what arrives: a hostile agent on a raw WebSocket,
oversized and inconsistent requests, pickles offered to the server, huge
output, values and exceptions that can't be pickled. The table of all
scenarios is in docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from conftest import Workspace, private_stack

from .faults import (
    PUPPETS,
    assert_healthy,
)


def test_s19_a_hostile_agent_changes_nothing_and_slows_no_one(workspace: Workspace) -> None:
    """A raw WebSocket client speaks the agent protocol badly: unknown methods,
    wrong types, missing fields, results for executions it doesn't hold,
    heartbeats claiming them, and a flood; each gets an error reply (or the
    connection closes with a 4xxx code), and a healthy agent keeps working."""
    workspace.write("flows.py", PUPPETS)
    workspace.env["COFLUX_JOURNAL"] = str(workspace.root / "journal.jsonl")
    workspace.start_agent("flows.py")
    first = workspace.cli_json("submit", "flows.py", "main", "1", "--wait")
    assert first["result"] == 11
    with workspace.client() as client:
        before = client.get_run(first["id"])
    task_execution = before["steps"][1]["executions"][0]["id"]
    url = workspace.server.replace("http", "ws", 1) + f"/api/projects/{workspace.project}/agent"
    bad = [
        {"id": 1, "method": "nonsense", "params": {}},
        {"id": 2, "method": "put_result", "params": {}},
        {"id": 3, "method": "put_result", "params": {"execution_id": 42}},
        {
            "id": 4,
            "method": "put_result",
            "params": {"execution_id": task_execution, "value": {"format": "json", "data": 666}},
        },
        {"id": 5, "method": "started", "params": {"execution_id": "NOTARUN:1:1"}},
        {"id": 6, "method": "heartbeat", "params": {"executions": [task_execution]}},
        {"id": 7, "method": "schedule", "params": {"execution_id": task_execution}},
        {"id": 8, "method": "get_result", "params": {"execution_id": ["not", "a", "ref"]}},
        {"id": 9, "method": "put_logs", "params": {"messages": "not a list"}},
        [1, 2, 3],
        "a string",
    ]

    async def hostile() -> dict[int, Any]:
        replies: dict[int, Any] = {}
        async with websockets.connect(url) as sock:
            hello = {"session_id": "hostile", "environment": "production", "concurrency": 1}
            await sock.send(json.dumps({"id": 0, "method": "hello", "params": hello}))
            await sock.recv()
            for message in bad:
                await sock.send(json.dumps(message))
            await sock.send("{not json")
            flood = [
                {"id": 1000 + i, "method": "heartbeat", "params": {"executions": []}}
                for i in range(10_000)
            ]
            for start in range(0, len(flood), 500):
                await sock.send(json.dumps(flood[start : start + 500]))
            while len([k for k in replies if k >= 1000]) < 10_000 or not all(
                k in replies for k in range(1, 10)
            ):
                frame = json.loads(await asyncio.wait_for(sock.recv(), 20))
                for reply in frame if isinstance(frame, list) else [frame]:
                    if isinstance(reply.get("id"), int):
                        replies[reply["id"]] = reply
        return replies

    async def meanwhile() -> tuple[dict[int, Any], float]:
        flood = asyncio.create_task(hostile())
        await asyncio.sleep(0.3)
        started = time.monotonic()
        healthy = await asyncio.to_thread(
            workspace.cli_json, "submit", "flows.py", "main", "2", "--wait"
        )
        assert healthy["result"] == 21
        return await flood, time.monotonic() - started

    replies, healthy_seconds = asyncio.run(meanwhile())
    # Malformed messages are invalid; a result for an execution the agent
    # doesn't hold conflicts; a started report of an unknown run is not found.
    expected_codes = {1: "invalid", 2: "invalid", 3: "invalid", 4: "conflict", 5: "not_found"}
    expected_codes |= {7: "invalid", 8: "invalid", 9: "invalid"}
    codes = {id: replies[id].get("error", {}).get("code") for id in expected_codes}
    assert codes == expected_codes, {id: replies[id] for id in expected_codes}
    assert replies[6] == {"id": 6, "result": {}}  # a claim to others' work is ignored
    assert all("result" in replies[1000 + i] for i in range(10_000))
    # Served beside the flood, not after it: a starved run would wait out the
    # whole flood's 20 s reply window.
    assert healthy_seconds < 15
    with workspace.client() as client:
        after = client.get_run(first["id"])
    assert after["steps"] == before["steps"]  # nothing the hostile agent said changed the run


def test_s17_oversized_and_inconsistent_requests_are_refused(workspace: Workspace) -> None:
    base = f"{workspace.server}/api/projects/{workspace.project}"
    with httpx.Client(timeout=30) as client:
        json_body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
        too_big = client.post(
            f"{workspace.server}/api/projects",
            content=json_body,
            headers={"Content-Type": "application/json"},
        )
        assert too_big.status_code == 413 and "detail" in too_big.json()

        def chunks() -> Any:
            for _ in range(2):
                yield b"x" * (1024 * 1024)

        chunked = client.post(
            f"{workspace.server}/api/projects",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413
        blob = b"y" * (64 * 1024 * 1024 + 1)
        big_blob = client.put(f"{base}/blobs/{'0' * 32}", content=blob)
        assert big_blob.status_code == 413 and "detail" in big_blob.json()
        headers = {f"X-Padding-{i}": "z" * 1000 for i in range(100)}
        huge_headers = client.get(f"{workspace.server}/api/health", headers=headers)
        assert huge_headers.status_code in (400, 431)  # by uvicorn's parser, or by ours
        assert client.get(f"{workspace.server}/api/health").status_code == 200

    async def too_big_message() -> int:
        url = workspace.server.replace("http", "ws", 1) + f"/api/projects/{workspace.project}/agent"
        async with websockets.connect(url, max_size=None) as sock:
            hello = {"session_id": "big", "environment": "production", "concurrency": 1}
            await sock.send(json.dumps({"id": 0, "method": "hello", "params": hello}))
            await sock.recv()
            await sock.send(
                json.dumps(
                    {"id": 1, "method": "heartbeat", "params": {"pad": "p" * (2 * 1024 * 1024)}}
                )
            )
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(sock.recv(), 10)
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    assert asyncio.run(too_big_message()) == 1009


def test_s27_pickles_are_never_loaded_by_the_server_cli_or_pages(workspace: Workspace) -> None:
    """A pickled argument whose loading would write a file is submitted, shown by
    the API, the CLI and the web page: the file never appears."""
    import base64
    import pickle

    trap = workspace.root / "unpickled"

    class Trap:
        def __reduce__(self) -> Any:
            return (open, (str(trap), "w"))

    data = pickle.dumps(Trap())
    workspace.write("flows.py", PUPPETS.replace("def main(x: int)", "def main(x)"))
    workspace.cli("register", "flows.py", check=True)
    with workspace.client() as client:
        key = __import__("coflux.cache.keys", fromlist=["hash_bytes"]).hash_bytes(data)
        client.put_blob(key, data)
        argument = {
            "format": "pickle",
            "size": len(data),
            "blob": key,
            "type": "Trap",
            "repr": "<Trap>",
        }
        run = client.submit("production", "flows", "main", [argument])
        shown = client.get_run(run["id"])
    assert shown["steps"][0]["arguments"][0]["format"] == "pickle"
    assert workspace.cli("runs", "show", run["id"], "--json").returncode == 0
    assert workspace.cli("runs", "show", run["id"]).returncode == 0
    page = httpx.get(f"{workspace.server}/projects/{workspace.project}/runs/{run['id']}")
    assert page.status_code == 200 and "Trap" in page.text
    assert base64.b64encode(data).decode() not in page.text
    assert not trap.exists()


NOISY = """
    import sys
    import coflux as cf

    @cf.task()
    def many_lines() -> str:
        line = "l" * 1023
        for _ in range(100 * 1024):  # 100 MiB in 1 KiB lines
            print(line)
        return "many lines"

    @cf.task()
    def one_long_line() -> str:
        chunk = "x" * (1024 * 1024)
        for _ in range(100):  # 100 MiB, no newline
            sys.stdout.write(chunk)
        return "one long line"

    @cf.task()
    def invalid_bytes() -> str:
        for _ in range(50):  # 50 MiB that isn't UTF-8
            sys.stderr.buffer.write(b"\\xff\\xfe" * (512 * 1024))
        return "invalid bytes"

    @cf.task()
    def many_logs() -> str:
        for i in range(1_000_000):
            cf.log_info("message {i}", i=i)
        return "many logs"

    @cf.task()
    def quiet() -> str:
        for i in range(10):
            cf.log_info("line {i}", i=i)
        return "quiet"

    @cf.workflow()
    def noisy() -> list:
        calls = [t.submit() for t in (many_lines, one_long_line, invalid_bytes, many_logs, quiet)]
        return [c.result() for c in calls]
"""


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_s26_huge_output_is_truncated_with_a_marker_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    with private_stack(tmp_path) as (server, ws):
        ws.write("flows.py", NOISY)
        agent = ws.start_agent("flows.py")
        submitted = ws.cli("submit", "flows.py", "noisy", "--wait", "--json", timeout=120)
        assert submitted.returncode == 0, submitted.stderr
        done = json.loads(submitted.stdout)
        assert done["result"] == [
            "many lines",
            "one long line",
            "invalid bytes",
            "many logs",
            "quiet",
        ]
        logs = ws.cli("logs", done["id"], "--json", check=True)
        entries = json.loads(logs.stdout)
        by_step: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_step.setdefault(entry["execution_id"].rsplit(":", 1)[0], []).append(entry)
        limit = 8 * 1024 * 1024
        markers = 0
        for step, lines in by_step.items():
            text = [str(e.get("message", "")) for e in lines]
            assert sum(len(t) + 1 for t in text) <= limit + 200, step
            markers += sum("bytes of output truncated]" in t for t in text[-1:])
        assert markers == 4  # every noisy task ends with the marker; `quiet` has none
        quiet = [e["message"] for e in entries if e["message"].startswith("line ")]
        assert quiet == [f"line {i}" for i in range(10)]
        assert any("\ufffd" in e["message"] for e in entries)  # invalid bytes replaced
        assert server.process is not None
        # After 250 MiB of output, peaks of 110 MiB (server) and 80 MiB (agent):
        # bounded by the agent's log backlog, not growing with the output.
        assert _peak_rss_mib(server.process.pid) < 150
        assert _peak_rss_mib(agent.pid) < 150
        # Stored text is bytes within the budget (a replacement character is 3),
        # so the database grows by at most the four noisy tasks' limits + 10%.
        if not server.database_url:
            stored = sum(f.stat().st_size for f in (server.data_dir / "projects").iterdir())
            assert stored <= 4 * limit * 1.1 + 1024 * 1024
        assert_healthy(server)


PATHOLOGIES = """
    import socket
    import threading
    import coflux as cf

    class Unreducible:
        def __reduce__(self):
            raise RuntimeError("no reducing me")

    @cf.task()
    def returns(kind: str):
        if kind == "lock":
            return threading.Lock()
        if kind == "generator":
            return (i for i in range(3))
        if kind == "socket":
            return {"conn": socket.socket()}
        if kind == "lambda":
            lock = threading.Lock()
            return [lambda: lock]
        return Unreducible()

    class TwoArgs(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a} and {b}")

    class KeywordOnly(Exception):
        def __init__(self, *, field):
            super().__init__(f"field={field}")
            self.field = field

    class HoldsLock(Exception):
        def __init__(self):
            super().__init__("holding a lock")
            self.lock = threading.Lock()

    class BadStr(Exception):
        def __str__(self):
            raise RuntimeError("no str")

    class BadReduce(Exception):
        def __reduce__(self):
            raise RuntimeError("no reduce")

    @cf.task()
    def raises(kind: str):
        raise {"two": lambda: TwoArgs(1, 2), "kw": lambda: KeywordOnly(field=3),
               "lock": HoldsLock, "str": BadStr, "reduce": BadReduce}[kind]()

    @cf.workflow()
    def catch(kind: str) -> list:
        try:
            raises(kind)
        except Exception as e:
            return [type(e).__name__, type(e).__module__]
        return ["nothing raised"]

    @cf.workflow()
    def give(kind: str):
        return returns(kind)
"""


def test_s24_unpicklable_results_fail_the_execution_clearly(workspace: Workspace) -> None:
    workspace.write("flows.py", PATHOLOGIES)
    workspace.start_agent("flows.py")
    expected = {  # what the message names: where the value sits, and its type
        "lock": "return value → _thread.lock",
        "generator": "return value → generator",
        "socket": "return value['conn'] → socket.socket",
        "lambda": "return value[0] → function",
        "unreducible": "return value → flows.Unreducible",
    }
    for kind, where in expected.items():
        done = workspace.cli("submit", "flows.py", "give", kind, "--wait", "--json")
        assert done.returncode == 1, (kind, done.stderr)
        run_id = json.loads(done.stdout)["id"]
        with workspace.client() as client:
            run = client.get_run(run_id)
        task = run["steps"][1]["executions"]
        assert len(task) == 1, kind  # deterministic: not retried
        assert task[0]["state"] == "failed"
        assert task[0]["error"]["type"] == "coflux.errors.SerializationError", kind
        assert where in task[0]["error"]["message"], (kind, task[0]["error"]["message"])
    # The agent serves on.
    assert workspace.cli_json("submit", "flows.py", "catch", "two", "--wait")["result"]


def test_s25_exceptions_that_cannot_be_pickled_still_fail_their_caller(
    workspace: Workspace,
) -> None:
    workspace.write("flows.py", PATHOLOGIES)
    workspace.start_agent("flows.py")
    caught = {}
    for kind in ("two", "kw", "lock", "str", "reduce"):
        done = workspace.cli_json("submit", "flows.py", "catch", kind, "--wait")
        caught[kind] = done["result"]
        with workspace.client() as client:
            error = client.get_run(done["id"])["steps"][1]["executions"][0]["error"]
        assert error["type"].startswith("flows."), (kind, error)
        assert error["traceback"], kind
        if kind == "str":
            assert error["message"] == "<unprintable>"
    # Rebuilt as their own class where the class can be made from the message,
    # else a RemoteError carrying type, message and traceback.
    # The caller's process can import `flows`, so each class is rebuilt there
    # without calling its __init__ (whatever its constructor, lock, __reduce__
    # or __str__): the caller catches the task's own class, never a RemoteError.
    assert caught == {
        "two": ["TwoArgs", "flows"],
        "kw": ["KeywordOnly", "flows"],
        "lock": ["HoldsLock", "flows"],
        "str": ["BadStr", "flows"],
        "reduce": ["BadReduce", "flows"],
    }
