"""Placement by agent tags: `coflux agent --provides key=value` and `requires={...}` on
targets, through a real server and real agent processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from conftest import Workspace, one_line_error, wait_until

from coflux.errors import ConfigError
from coflux.local.config import load_config

FLOWS = """
    import os
    import coflux as cf

    @cf.task(requires={"gpu": "a100"})
    def on_gpu(i: int) -> str:
        return os.environ["AGENT_NAME"]

    @cf.task()
    def anywhere(i: int) -> str:
        return os.environ["AGENT_NAME"]

    @cf.workflow()
    def place() -> dict:
        gpu = [on_gpu.submit(i) for i in range(5)]
        plain = [anywhere.submit(i) for i in range(5)]
        return {"gpu": [e.result() for e in gpu], "plain": [e.result() for e in plain]}

    @cf.workflow()
    def one_on_gpu() -> str:
        return on_gpu(0)

    @cf.workflow(requires={"gpu": "a100", "region": "eu"})
    def in_eu() -> str:
        return os.environ["AGENT_NAME"]
"""


def start_tagged_agent(
    ws: Workspace,
    name: str,
    *provides: str,
    modules: tuple[str, ...] = ("flows.py",),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``Workspace.start_agent`` with ``--provides`` flags, and ``AGENT_NAME`` set so
    a task can tell which agent ran it."""
    flags = tuple(arg for tag in provides for arg in ("--provides", tag))
    return ws.start_agent(*modules, args=flags, env={"AGENT_NAME": name, **(env or {})})


def listed_provides(ws: Workspace) -> list[dict[str, str]]:
    """What the project's connected agents provide, as the agents listing shows it."""
    with ws.client() as client:
        provides = [a["provides"] for a in client.list_agents() if a["connected"]]
    return sorted(provides, key=lambda tags: sorted(tags.items()))


def submit(ws: Workspace, target: str) -> str:
    return ws.cli_json("submit", "flows.py", target)["id"]


def show(ws: Workspace, run_id: str) -> dict[str, Any]:
    return ws.cli_json("runs", "show", run_id)


def wait_for_run(ws: Workspace, run_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until(
        lambda: (doc := show(ws, run_id))["state"] != "running" and doc, timeout=timeout
    )


def test_tasks_requiring_a_tag_run_only_on_the_agent_providing_it(workspace: Workspace) -> None:
    workspace.write("flows.py", FLOWS)
    start_tagged_agent(workspace, "plain")
    start_tagged_agent(workspace, "gpu", "gpu=a100")
    assert listed_provides(workspace) == [{}, {"gpu": "a100"}]
    page = httpx.get(f"{workspace.server}/projects/{workspace.project}?env=production")
    assert page.text.count("gpu=a100") == 1

    result = workspace.cli_json("submit", "flows.py", "place", "--wait")
    assert result["state"] == "succeeded", result
    assert result["result"]["gpu"] == ["gpu"] * 5
    assert set(result["result"]["plain"]) <= {"plain", "gpu"}
    assert len(result["result"]["plain"]) == 5
    gpu_steps = [s for s in result["steps"] if s["target"] == "flows:on_gpu"]
    assert [s["state"] for s in gpu_steps] == ["succeeded"] * 5
    # One execution each: nothing was assigned to the plain agent and handed back.
    assert [len(s["executions"]) for s in gpu_steps] == [1] * 5


def test_a_step_no_agent_can_take_stays_queued_until_one_connects(workspace: Workspace) -> None:
    workspace.write("flows.py", FLOWS)
    start_tagged_agent(workspace, "plain", "region=eu")
    called = submit(workspace, "one_on_gpu")
    required = submit(workspace, "in_eu")
    # The calling workflow runs on the plain agent and its call is made...
    wait_until(lambda: len(show(workspace, called)["steps"]) == 2)
    # ...but neither step requiring gpu=a100 is assigned (and, below, each ran
    # once, on the agent whose name it returns: never on one that lacks the tags).
    waiting = show(workspace, called)
    assert [s["state"] for s in waiting["steps"]] == ["assigned", "queued"]
    assert [e["state"] for e in waiting["steps"][1]["executions"]] == ["queued"]
    held = show(workspace, required)
    assert held["state"] == "running"
    assert [s["state"] for s in held["steps"]] == ["queued"]

    # gpu=a100 alone doesn't satisfy in_eu (it also requires region=eu).
    start_tagged_agent(workspace, "gpu", "gpu=a100")
    done = wait_for_run(workspace, called)
    assert done["state"] == "succeeded"
    assert done["result"] == "gpu"
    assert [s["state"] for s in done["steps"]] == ["succeeded", "succeeded"]
    assert [len(s["executions"]) for s in done["steps"]] == [1, 1]
    assert [s["state"] for s in show(workspace, required)["steps"]] == ["queued"]

    start_tagged_agent(workspace, "gpu-eu", "gpu=a100", "region=eu")
    finished = wait_for_run(workspace, required)
    assert finished["state"] == "succeeded"
    assert finished["result"] == "gpu-eu"
    assert [len(s["executions"]) for s in finished["steps"]] == [1]


def test_provides_from_the_environment_and_the_flag_replacing_it(workspace: Workspace) -> None:
    workspace.write("flows.py", FLOWS)
    start_tagged_agent(workspace, "from-env", env={"COFLUX_PROVIDES": "gpu=a100, region = eu"})
    start_tagged_agent(
        workspace, "from-flag", "zone=b", env={"COFLUX_PROVIDES": "gpu=a100,region=eu"}
    )
    assert listed_provides(workspace) == [{"gpu": "a100", "region": "eu"}, {"zone": "b"}]


def test_malformed_provides_is_one_line_and_no_agent(workspace: Workspace) -> None:
    workspace.write("flows.py", FLOWS)
    one_line_error(
        workspace.cli("agent", "flows.py", "--provides", "novalue", timeout=20),
        "error: --provides: expected key=value (e.g. gpu=a100), not 'novalue'",
    )
    one_line_error(
        workspace.cli("agent", "flows.py", "--provides", "=a100", timeout=20),
        "--provides: expected key=value",
    )
    one_line_error(
        workspace.cli("agent", "flows.py", "--provides", "gpu=", timeout=20),
        "--provides: tag 'gpu' needs a non-empty string value",
    )
    one_line_error(
        workspace.cli("dev", "flows.py", "--provides", "gpu", timeout=20),
        "error: --provides: expected key=value",
    )
    one_line_error(
        workspace.cli(
            "agent", "flows.py", env_extra={"COFLUX_PROVIDES": "gpu=a100,oops"}, timeout=20
        ),
        "error: COFLUX_PROVIDES: expected key=value (e.g. gpu=a100), not 'oops'",
    )
    with workspace.client() as client:
        assert client.list_agents() == []


def test_requires_that_is_not_a_dict_of_strings_fails_at_decoration(
    workspace: Workspace,
) -> None:
    workspace.write(
        "bad.py",
        """
        import coflux as cf

        @cf.task(requires={"gpu": 100})
        def train() -> None:
            pass
        """,
    )
    one_line_error(
        workspace.cli("register", "bad.py"),
        "train: requires: tag 'gpu' needs a non-empty string value",
    )
    with pytest.raises(Exception, match="requires must be a dict of tag names to strings"):
        import coflux as cf

        cf.workflow(requires="gpu=a100")(lambda: None)  # type: ignore[arg-type]


def test_provides_in_coflux_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COFLUX_PROVIDES", raising=False)
    (tmp_path / ".coflux.toml").write_text('provides = { gpu = "a100", region = "eu" }\n')
    assert load_config(cwd=tmp_path).provides == {"gpu": "a100", "region": "eu"}
    monkeypatch.setenv("COFLUX_PROVIDES", "gpu=h100")
    assert load_config(cwd=tmp_path).provides == {"gpu": "h100"}
    assert load_config(cwd=tmp_path, provides=["zone=b"]).provides == {"zone": "b"}
    (tmp_path / ".coflux.toml").write_text("provides = { gpu = 1 }\n")
    monkeypatch.delenv("COFLUX_PROVIDES")
    with pytest.raises(ConfigError, match="provides: tag 'gpu' needs a non-empty string"):
        load_config(cwd=tmp_path)


def test_a_hello_with_malformed_provides_is_refused(workspace: Workspace) -> None:
    url = workspace.server.replace("http", "ws", 1) + f"/api/projects/{workspace.project}/agent"

    async def hello(provides: Any) -> tuple[int | None, str | None]:
        async with websockets.connect(url, compression=None) as ws:
            params = {"session_id": "s", "environment": "production", "provides": provides}
            await ws.send(json.dumps({"id": 0, "method": "hello", "params": params}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, ws.close_reason

    # The typed protocol refuses a wrong shape, naming the field; the tag rules the rest.
    shape = (
        "malformed hello: malformed request:"
        " Expected `object | null`, got `{}` - at `$.params.provides`"
    )
    expected = {
        '["gpu"]': (4400, shape.format("array")),
        '{"gpu": 1}': (
            4400,
            "malformed hello: provides: tag 'gpu' needs a non-empty string value without ','"
            " or surrounding spaces (or True/False, or",
        ),
        '{"": "x"}': (
            4400,
            "malformed hello: provides: invalid tag name '': use a non-empty string"
            " without '=', ',' or surrounding spaces",
        ),
        '"gpu=a100"': (4400, shape.format("str")),
    }
    for text, answer in expected.items():
        assert asyncio.run(hello(json.loads(text))) == answer, text
    with workspace.client() as client:
        assert client.list_agents() == []


SHARED = """
    import json
    import os
    import time
    import coflux as cf

    @cf.task()
    def work(i: int, journal: str) -> str:
        name = os.environ["AGENT_NAME"]
        with open(journal, "a") as f:
            f.write(json.dumps({"agent": name, "i": i, "start": time.time()}) + "\\n")
        time.sleep(0.3)
        with open(journal, "a") as f:
            f.write(json.dumps({"agent": name, "i": i, "end": time.time()}) + "\\n")
        return name

    @cf.workflow()
    def spread(n: int, journal: str) -> list:
        return [c.result() for c in [work.submit(i, journal) for i in range(n)]]
"""

WORKFLOW_ONLY = """
    import coflux as cf

    @cf.stub("tasks")
    def work(i: int, journal: str) -> str: ...

    @cf.workflow()
    def spread(n: int, journal: str) -> list:
        return [c.result() for c in [work.submit(i, journal) for i in range(n)]]
"""


@contextlib.contextmanager
def network_namespace(name: str, subnet: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """A network namespace joined to this one by a veth pair: the command prefix
    that runs a program inside it, and the address this host has on the link."""
    host, inside = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", f"{name}0", "type", "veth", "peer", "name", f"{name}1"],
        ["ip", "link", "set", f"{name}1", "netns", name],
        ["ip", "addr", "add", f"{host}/24", "dev", f"{name}0"],
        ["ip", "link", "set", f"{name}0", "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{inside}/24", "dev", f"{name}1"],
        ["ip", "netns", "exec", name, "ip", "link", "set", f"{name}1", "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        pytest.skip(f"can't make a network namespace here ({e}); needs root and iproute2")
    try:
        yield ("ip", "netns", "exec", name), host
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{name}0"], capture_output=True)


def test_agents_on_two_hosts_share_the_work_within_their_concurrency(tmp_path: Path) -> None:
    """Two agents in network namespaces of their own (two "hosts" reaching the
    server over a veth link, not loopback), concurrency 1 and 2, share 12 tasks;
    the workflow runs on a third agent serving only the workflow's repository."""
    from conftest import ServerProcess, new_workspace

    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    suffix = uuid.uuid4().hex[:4]
    server = ServerProcess(tmp_path / "data", args=("--host", "0.0.0.0", "--insecure")).start()
    ws = new_workspace(server, tmp_path / "ws")
    journal = tmp_path / "journal.jsonl"
    try:
        with (
            network_namespace(f"cfa{suffix}", 41) as (in_a, host_a),
            network_namespace(f"cfb{suffix}", 42) as (in_b, host_b),
        ):
            ws.write("tasks.py", SHARED)
            ws.write("wf.py", WORKFLOW_ONLY)
            for prefix, host, name, concurrency in [(in_a, host_a, "a", 1), (in_b, host_b, "b", 2)]:
                ws.start_agent(
                    "tasks.py",
                    concurrency=concurrency,
                    prefix=prefix,
                    env={"AGENT_NAME": name, "COFLUX_SERVER": f"http://{host}:{server.port}"},
                )
            ws.start_agent("wf.py", env={"AGENT_NAME": "workflows"})
            try:
                done = ws.cli_json("submit", "wf.py", "spread", "12", str(journal), "--wait")
                with ws.client() as client:
                    agents = {tuple(a["repositories"]): a for a in client.list_agents()}
            finally:
                ws.stop_agents()  # while their links are up: they say goodbye over them
    finally:
        ws.stop_agents()
        server.stop()
    assert set(done["result"]) == {"a", "b"}
    assert agents[("tasks",)]["connected"] and agents[("wf",)]["connected"]
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    for name, concurrency in [("a", 1), ("b", 2)]:
        edges = sorted(
            (e.get("start", e.get("end")), 1 if "start" in e else -1)
            for e in events
            if e["agent"] == name
        )
        running = peak = 0
        for _, change in edges:
            running += change
            peak = max(peak, running)
        assert peak == concurrency, (name, peak)
    assert sorted(e["i"] for e in events if "start" in e) == list(range(12))
