"""Every acknowledgement means stored: the server's side (scenarios S28-S33 of
the reliability document). Each test injects its fault for real: a small
tmpfs for a full disk, values PostgreSQL refuses, a blob deleted from both
stores, a short agent timeout, a server killed with ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from conftest import (
    FAST_ENV,
    ServerProcess,
    Workspace,
    new_workspace,
    private_stack,
    wait_until,
)

from coflux.records.references import new_run_id

#: A workflow of one parameter, registered without an agent.
MANIFEST = {
    "environment": "production",
    "repository": "m",
    "targets": [
        {
            "name": "w",
            "type": "workflow",
            "parameters": [
                {"name": "x", "annotation": None, "default": None, "kind": "positional"}
            ],
        }
    ],
}


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (needs root; skipped otherwise)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"can't mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def new_project(server: ServerProcess) -> httpx.Client:
    project = f"t{uuid.uuid4().hex[:12]}"
    httpx.post(f"{server.url}/api/projects", json={"name": project}).raise_for_status()
    client = httpx.Client(base_url=f"{server.url}/api/projects/{project}", timeout=30)
    client.post("/manifests", json=MANIFEST).raise_for_status()
    return client


def submit(client: httpx.Client, data: Any) -> httpx.Response:
    body = {
        "environment": "production",
        "repository": "m",
        "target": "w",
        "arguments": [{"format": "json", "size": 1, "data": data}],
    }
    return client.post("/runs", json=body)


def run_ids(client: httpx.Client) -> set[str]:
    response = client.get("/runs", params={"environment": "production", "limit": 10000})
    assert response.status_code == 200, response.text
    return {run["id"] for run in response.json()}


def test_s28_a_full_disk_refuses_what_it_cannot_store_and_keeps_what_it_acknowledged(
    tmp_path: Path,
) -> None:
    """60 submissions of 400 KB to a server whose data is on an 8 MiB tmpfs:
    each is answered 201 (stored) or 507 (refused). Reads keep working while
    the disk is full; once space is freed, writes are accepted again without a
    restart; after ``kill -9`` and a restart exactly the acknowledged runs exist."""
    with contextlib.ExitStack() as stack:
        small = stack.enter_context(small_filesystem(tmp_path / "small", "8m"))
        filler = small / "filler"
        filler.write_bytes(b"\0" * (2 * 1024 * 1024))
        server = ServerProcess(small / "data").start()
        try:
            client = new_project(server)
            stack.callback(client.close)
            codes: list[int] = []
            acknowledged: set[str] = set()
            for i in range(60):
                response = submit(client, f"{i:03}" + "x" * 400_000)
                codes.append(response.status_code)
                if response.status_code == 201:
                    acknowledged.add(response.json()["id"])
                else:
                    assert response.json()["code"] == "storage_full", response.text
            assert set(codes) == {201, 507}, codes
            # Refused ones are refused from the first on: the disk stays full.
            first_refused = codes.index(507)
            assert codes[first_refused:] == [507] * (60 - first_refused)
            assert len(acknowledged) == first_refused
            # Reads are served while the disk is full.
            assert run_ids(client) == acknowledged
            assert httpx.get(f"{server.url}/api/health").status_code == 200

            filler.unlink()  # space is back: writes are accepted again, no restart
            response = submit(client, "after")
            assert response.status_code == 201, response.text
            acknowledged.add(response.json()["id"])

            server.kill()
            server.start()
            assert run_ids(client) == acknowledged
            log = server.log_path.read_text()
            assert "Traceback" not in log
        finally:
            server.stop()
            with contextlib.suppress(OSError):
                os.unlink(server.log_path)


UNSTORABLE = [
    ("NaN", "arguments.0.data.x is nan"),
    ("Infinity", "arguments.0.data.x is inf"),
    ("-Infinity", "arguments.0.data.x is -inf"),
    ("1e999999", "arguments.0.data.x is inf"),
    ('"\\ud800"', "arguments.0.data.x holds a lone surrogate"),
]


HOLE = "<literal>"


def with_literal(document: Any, literal: str) -> str:
    """``document`` as JSON text with ``literal`` (``NaN``, say) written where ``HOLE`` is."""
    return json.dumps(document).replace(json.dumps(HOLE), literal)


@pytest.fixture
def backend_server(tmp_path: Path, database_url: str | None) -> Iterator[ServerProcess]:
    """A server of the test's own, on SQLite and then on PostgreSQL."""
    server = ServerProcess(tmp_path / "data", database_url=database_url).start()
    yield server
    server.stop()


def test_s29_values_the_store_cannot_hold_are_refused_at_the_edge_on_both_backends(
    backend_server: ServerProcess,
) -> None:
    """Non-finite numbers (as JSON text: ``NaN``, ``Infinity``, ``1e999999``) and
    lone surrogates, in a submission's argument, an imported run's time and an
    agent's message: one 422 naming the field, nothing stored, the same on
    SQLite and PostgreSQL; listings keep working and survive a restart."""
    server = backend_server
    with contextlib.closing(new_project(server)) as client:
        for literal, detail in UNSTORABLE:
            argument = {"format": "json", "size": 1, "data": {"x": HOLE}}
            body = with_literal(
                {
                    "environment": "production",
                    "repository": "m",
                    "target": "w",
                    "arguments": [argument],
                },
                literal,
            )
            response = client.post(
                "/runs", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (literal, response.text)
            assert response.json()["code"] == "invalid"
            assert response.json()["detail"].startswith(f"body: {detail}"), response.text
        assert run_ids(client) == set()

        for literal, field in [
            ("NaN", "run.created_at"),
            ("1e308", "run.created_at"),
            ("-1", "run.created_at"),
        ]:
            run = {"id": new_run_id(), "environment": "production", "created_at": HOLE}
            body = with_literal({"format": 1, "run": run, "steps": [], "executions": []}, literal)
            response = client.post(
                "/runs/import", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (literal, response.text)
            assert field in response.json()["detail"], response.text
        assert run_ids(client) == set()

        accepted = submit(client, {"x": 1.5})
        assert accepted.status_code == 201, accepted.text
        server.kill()
        server.start()
        assert run_ids(client) == {accepted.json()["id"]}
        run = client.get(f"/runs/{accepted.json()['id']}").json()
        assert run["steps"][0]["arguments"][0]["data"] == {"x": 1.5}

        # An agent's message holding NaN is answered with an error naming the field.
        project = str(client.base_url).rstrip("/").rsplit("/", 1)[-1]
        replies = asyncio.run(agent_exchange(server, project, NAN_HEARTBEAT))
        assert replies == {
            "id": 7,
            "error": {
                "code": "invalid",
                "message": "heartbeat: params.extra.0 is nan: "
                "only finite numbers can be stored (not NaN or Infinity)",
            },
        }


NAN_HEARTBEAT = '{"id": 7, "method": "heartbeat", "params": {"executions": [], "extra": [NaN]}}'


async def agent_exchange(server: ServerProcess, project: str, message: str) -> Any:
    """Say hello as an agent, send ``message``, and return the reply to it."""
    url = server.url.replace("http", "ws", 1) + f"/api/projects/{project}/agent"
    async with websockets.connect(url) as ws:
        hello = {
            "id": 0,
            "method": "hello",
            "params": {
                "session_id": uuid.uuid4().hex,
                "environment": "production",
                "repositories": [],
                "concurrency": 1,
                "executions": [],
            },
        }
        await ws.send(json.dumps(hello))
        assert "result" in json.loads(await ws.recv())
        await ws.send(message)
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if isinstance(reply, dict) and reply.get("id") == 7:
                return reply


LONG_TASK = """
    import time

    import coflux as cf

    @cf.task()
    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return f"slept {seconds}"

    @cf.workflow()
    def main(seconds: float) -> str:
        return slow(seconds)
"""


def test_s30_a_task_longer_than_a_short_agent_timeout_succeeds(tmp_path: Path) -> None:
    """``coflux server --agent-timeout 3`` and a task that sleeps 6 s, with no
    timing variable set: the agent heartbeats at the cadence the server gives
    (0.5 s), is never fenced nor timed out, and the task runs once."""
    # No Coflux variable at all in what every test process gets: the suite runs
    # on the defaults a user has (PYTHONUNBUFFERED is Python's own).
    assert [name for name in FAST_ENV if name.startswith("COFLUX_")] == []
    with private_stack(tmp_path, agent_timeout=3) as (server, ws):
        ws.write("flows.py", LONG_TASK)
        ws.start_agent("flows.py")
        done = ws.cli_json("submit", "flows.py", "main", "6", "--wait")
        with ws.client() as client:
            run = client.get_run(done["id"])
        assert done["result"] == "slept 6"
        assert [[e["state"] for e in s["executions"]] for s in run["steps"]] == [
            ["succeeded"],
            ["succeeded"],
        ]
        assert "fenced" not in ws.agent_log()
        assert "timed out" not in server.log_path.read_text()


CACHED = """
    import os

    import coflux as cf

    @cf.task(cache=True)
    def big(n: int) -> str:
        with open(os.environ["COFLUX_JOURNAL"], "a") as f:
            f.write(f"{n}\\n")
        return "b" * n

    @cf.workflow()
    def main(n: int) -> int:
        return len(big(n))
"""


def blob_files(ws: Workspace, server: ServerProcess, key: str) -> list[Path]:
    """Every copy of blob ``key``: the server's and the workspace's."""
    return [
        *(server.data_dir / "blobs").rglob(key),
        *(ws.root / ".coflux").rglob(key),
    ]


@pytest.mark.parametrize("fault", ["deleted", "corrupt"])
def test_s31_a_lost_cached_blob_is_a_cache_miss(tmp_path: Path, fault: str) -> None:
    """A cached result's blob deleted from both stores (or corrupt on the
    server, deleted from the workspace): the next call executes the task again,
    with a warning in its log, and the call after reuses the new result. A
    request for the corrupt blob gets a JSON error, not a broken stream."""
    journal = tmp_path / "journal"
    with private_stack(tmp_path) as (server, ws):
        ws.env["COFLUX_JOURNAL"] = str(journal)
        ws.write("flows.py", CACHED)
        ws.start_agent("flows.py")
        first = ws.cli_json("submit", "flows.py", "main", "5000", "--wait")
        assert first["result"] == 5000
        with ws.client() as client:
            key = client.get_run(first["id"])["steps"][1]["executions"][0]["value"]["blob"]
        copies = blob_files(ws, server, key)
        assert len(copies) == 2, copies
        for path in copies:
            if fault == "corrupt" and path.is_relative_to(server.data_dir):
                path.write_bytes(b"c" * path.stat().st_size)
            else:
                path.unlink()
        second = ws.cli_json("submit", "flows.py", "main", "5000", "--wait")
        assert second["result"] == 5000
        step = second["steps"][1]
        assert [e["state"] for e in step["executions"]] == ["succeeded"]
        messages = ws.cli_json("logs", step["id"])
        lost = "isn't on the server" if fault == "deleted" else "is corrupt"
        assert [(m["level"], lost in m["message"]) for m in messages] == [("warning", True)]
        assert messages[0]["message"].startswith(
            f"the cached result of {first['steps'][1]['executions'][0]['id']} can't be reused"
        )

        third = ws.cli_json("submit", "flows.py", "main", "5000", "--wait")
        assert third["result"] == 5000
        assert third["steps"][1]["executions"][0]["state"] == "cached"
        assert journal.read_text().split() == ["5000", "5000"]

        # The blob again, now corrupt on the server (its copy put back in the
        # store was verified when reused): fetching it is a JSON error.
        (stored,) = (server.data_dir / "blobs").rglob(key)
        stored.write_bytes(b"c" * stored.stat().st_size)
        fetch = f"{server.url}/api/projects/{ws.project}/blobs/fetch"
        response = httpx.post(fetch, json={"keys": [key]})
        assert response.status_code == 404
        assert response.json() == {
            "detail": f"blob {key} is corrupt: its content does not match its name",
            "code": "blob",
        }
        # Set aside: from then on it is missing.
        assert httpx.post(fetch, json={"keys": [key]}).json()["detail"] == (
            f"1 blob(s) aren't on the server (first: {key})"
        )


RESTARTABLE = """
    import json
    import os
    import time

    import coflux as cf

    JOURNAL = os.environ["COFLUX_JOURNAL"]

    def journal(event, name):
        with open(os.path.join(JOURNAL, "events"), "a") as f:
            f.write(json.dumps([event, name]) + "\\n")

    def gate(name):
        # Until the test opens it (after the restart, in the restarted case).
        while not os.path.exists(os.path.join(JOURNAL, "open")):
            time.sleep(0.02)

    def once(name):
        # True the first time only (a marker file, across attempts and restarts).
        path = os.path.join(JOURNAL, "once-" + name)
        if os.path.exists(path):
            return False
        open(path, "w").close()
        return True

    @cf.task(cache=True)
    def cached(x: int) -> int:
        journal("start", "cached")
        gate("cached")
        journal("end", "cached")
        return x * 2

    @cf.workflow()
    def single_flight(x: int) -> int:
        a = cached.submit(x)
        b = cached.submit(x)
        return a.result() + b.result()

    @cf.task()
    def blocker(x: int) -> int:
        # Holds the deferred calls (not started) until the third is made.
        while not os.path.exists(os.path.join(JOURNAL, "third")):
            time.sleep(0.02)
        return x

    @cf.task(defer=True, defer_params=["x"], wait=["after"])
    def deferred(x: int, after) -> int:
        journal("start", "deferred")
        return x + 1

    @cf.workflow()
    def defer(x: int) -> list:
        b = blocker.submit(x)
        first = deferred.submit(x, b)
        second = deferred.submit(x, b)
        journal("wait", "defer")
        gate("defer")
        third = deferred.submit(x, b)
        open(os.path.join(JOURNAL, "third"), "w").close()
        return [first.result(), second.result(), third.result()]

    @cf.task()
    def held(x: int) -> int:
        journal("start", "held")
        gate("held")
        journal("end", "held")
        return x * 3

    @cf.task(wait=True)
    def after(x) -> int:
        journal("start", "after")
        return x.result() + 1

    @cf.workflow()
    def waiting(x: int) -> int:
        return after(held.submit(x))

    @cf.task(memo=True)
    def memoised(x: int) -> int:
        journal("start", "memoised")
        return x * 5

    @cf.workflow()
    def memo(x: int) -> int:
        a = memoised(x)
        journal("wait", "memo")
        gate("memo")
        return a + memoised(x)

    @cf.task()
    def quick(x: int) -> int:
        journal("start", "quick")
        return x + 100

    @cf.workflow()
    def pausing(x: int) -> int:
        journal("start", "pausing")
        value = quick(x)
        if once("pausing"):
            journal("wait", "pausing")
            cf.suspend(4)
        return value

    @cf.workflow()
    def suspending(x: int) -> int:
        journal("start", "suspending")
        pending = held.submit(x)
        with cf.suspense(0.1):
            return pending.result()

    @cf.task(retries=(1, 4))
    def flaky(x: int) -> int:
        journal("start", "flaky")
        if once("flaky"):
            journal("wait", "flaky")
            raise RuntimeError("first attempt fails")
        return x - 1

    @cf.workflow()
    def retrying(x: int) -> int:
        return flaky(x)
"""

#: Each scenario: the workflow, and the journal event after which the state
#: under test exists (the server is killed then, in the restarted case).
RESTART_SCENARIOS = {
    "single_flight": ["start", "cached"],
    "defer": ["wait", "defer"],
    "waiting": ["start", "held"],
    "memo": ["wait", "memo"],
    "pausing": ["wait", "pausing"],
    "suspending": ["start", "held"],
    "retrying": ["wait", "flaky"],
}


def outcome(server: ServerProcess, root: Path, workflow: str, restart: bool) -> Any:
    """Run ``workflow`` in a project of its own; with ``restart``, kill the
    server with ``kill -9`` once the scenario's state exists and start it
    again. What happened: each step's target, execution states and results,
    and the journal of starts."""
    ws = new_workspace(server, root / "ws")
    try:
        return _outcome(server, ws, root / "journal", workflow, restart)
    finally:
        ws.stop_agents()


def _outcome(
    server: ServerProcess, ws: Workspace, journal: Path, workflow: str, restart: bool
) -> Any:
    journal.mkdir()
    ws.write("flows.py", RESTARTABLE)
    ws.env["COFLUX_JOURNAL"] = str(journal)
    ws.start_agent("flows.py")
    submitted = ws.cli_json("submit", "flows.py", workflow, "1")
    events = journal / "events"
    moment = RESTART_SCENARIOS[workflow]
    wait_until(
        lambda: (
            events.exists() and moment in [json.loads(x) for x in events.read_text().splitlines()]
        ),
        timeout=30,
    )
    if workflow == "suspending":  # the first attempt has suspended
        with ws.client() as client:
            wait_until(
                lambda: (
                    [e["state"] for e in client.get_run(submitted["id"])["steps"][0]["executions"]]
                    == ["suspended", "queued"]
                )
            )
    if restart:
        server.kill()
        server.start()
        ws.wait_for_agents(1)
    (journal / "open").touch()
    with ws.client() as client:
        final = client.wait_for_run(submitted["id"], timeout=60)
        run = client.get_run(submitted["id"])
    steps = [
        (
            s["target"],
            [
                (
                    e["state"],
                    (e.get("value") or {}).get("data"),
                    (e.get("error") or {}).get("message"),
                )
                for e in s["executions"]
            ],
        )
        for s in run["steps"]
    ]
    started = [json.loads(line) for line in events.read_text().splitlines()]
    return final["state"], steps, started


@pytest.mark.parametrize("workflow", list(RESTART_SCENARIOS))
def test_s32_a_server_restart_changes_no_outcome(tmp_path: Path, workflow: str) -> None:
    """Each piece of state the orchestrator holds in memory (single flight,
    defer, ``wait=``, memo, suspend, suspense, a retry's delay): the same
    workflow without a restart, then with the server killed (``kill -9``)
    while that state exists and restarted on the same data. Executions,
    states, results and the journal of starts are the same."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        plain = outcome(server, tmp_path / "plain", workflow, restart=False)
        restarted = outcome(server, tmp_path / "restarted", workflow, restart=True)
    finally:
        server.stop()
    assert plain[0] == "succeeded", plain
    assert restarted == plain, (restarted, plain)


GATED = """
    import os
    import time

    import coflux as cf

    @cf.task()
    def gated(path: str) -> str:
        open(os.path.join(path, "started"), "a").write("x")
        while not os.path.exists(os.path.join(path, "open")):
            time.sleep(0.02)
        return "done " + "r" * 100

    @cf.workflow()
    def main(path: str) -> str:
        return gated(path)
"""


def fill(path: Path) -> None:
    """Write to ``path`` until the filesystem is full."""
    with open(path, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)


def test_s28_a_result_refused_on_a_full_disk_is_kept_once_space_is_back(tmp_path: Path) -> None:
    """A task finishes while the server's disk is full: its result is not
    acknowledged (the agent keeps it and sends it again after reconnecting),
    nothing is abandoned, and once space is back the run succeeds with one
    execution per step and one start."""
    gate = tmp_path / "gate"
    gate.mkdir()
    with contextlib.ExitStack() as stack:
        small = stack.enter_context(small_filesystem(tmp_path / "small", "8m"))
        server = ServerProcess(small / "data").start()
        stack.callback(server.stop)
        ws = new_workspace(server, tmp_path / "ws")
        stack.callback(ws.stop_agents)
        ws.write("flows.py", GATED)
        ws.start_agent("flows.py")
        submitted = ws.cli_json("submit", "flows.py", "main", str(gate))
        wait_until(lambda: (gate / "started").exists())
        filler = small / "filler"
        fill(filler)
        (gate / "open").touch()
        log = server.log_path
        wait_until(lambda: "disk is full" in log.read_text(), timeout=20)
        with ws.client() as client:
            # Reads go on while the disk is full; the run is still running.
            assert client.get_run(submitted["id"])["steps"][1]["executions"][0]["state"] in (
                "assigned",
                "running",
            )
        filler.unlink()
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=30)
            run = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert [[e["state"] for e in s["executions"]] for s in run["steps"]] == [
            ["succeeded"],
            ["succeeded"],
        ]
        assert (gate / "started").read_text() == "x"
        text = log.read_text()
        assert "Traceback" not in text
        # The refused result made the orchestrator reload; the agent sent it again.
        assert "reloading its state from the database" in text
        assert "abandoned" not in text


SENSOR = """
    import os

    import coflux as cf

    @cf.sensor()
    def watch(cursor: int, journal: str) -> None:
        # Each start handles two items (up to six), checkpointing after each.
        for _ in range(2):
            if cursor >= 6:
                break
            cursor += 1
            with open(os.path.join(journal, "seen"), "a") as f:
                f.write(f"{cursor},")
            cf.checkpoint(cursor, journal)
        with open(os.path.join(journal, "ends"), "a") as f:
            f.write("x")
"""


def sensor_outcome(server: ServerProcess, root: Path, restart: bool) -> list[int]:
    """The items a sensor handled until it reached six; with ``restart``, the
    server is killed just after its first start ended (its next start
    pending) and started again."""
    ws = new_workspace(server, root / "ws")
    journal = root / "journal"
    journal.mkdir()
    try:
        ws.write("sensors.py", SENSOR)
        ws.start_agent("sensors.py")
        started = ws.cli_json("sensors", "start", "sensors.py", "watch", "0", str(journal))
        ends = journal / "ends"
        wait_until(lambda: ends.exists() and ends.read_text() == "x")
        if restart:
            server.kill()
            server.start()
            ws.wait_for_agents(1)
        seen = journal / "seen"
        wait_until(lambda: seen.read_text().count(",") >= 6, timeout=30)
        # One more start after the sixth item: nothing is handled again.
        count = len(ends.read_text())
        wait_until(lambda: len(ends.read_text()) > count, timeout=30)
        ws.cli("sensors", "stop", started["id"], check=True)
        return [int(v) for v in seen.read_text().strip(",").split(",")]
    finally:
        ws.stop_agents()


def test_s33_a_sensor_resumes_from_its_checkpoint_after_a_restart(tmp_path: Path) -> None:
    """A sensor whose next start is pending when the server is killed
    (``kill -9``) and restarted: it resumes from its last checkpoint, each
    item handled once, as without the restart."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        plain = sensor_outcome(server, tmp_path / "plain", restart=False)
        restarted = sensor_outcome(server, tmp_path / "restarted", restart=True)
    finally:
        server.stop()
    assert plain == [1, 2, 3, 4, 5, 6]
    assert restarted == plain
