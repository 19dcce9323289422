"""What a new user meets first: `runs show` from a git checkout, names, the Host check,
agents' output.

A real server and real CLI and agent processes; a real git repository where
the environment is derived from the branch.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import (
    ServerProcess,
    Workspace,
    commit_all,
    git_workspace,
    one_line_error,
    wait_until,
)

HELLO = """
    import coflux as cf

    @cf.task()
    def greeting(name: str) -> str:
        return f"Hello, {name}!"

    @cf.workflow()
    def greet(name: str) -> str:
        return greeting(name)
"""


def test_runs_show_from_a_git_checkout_never_races_its_imports(
    server: ServerProcess, tmp_path: Path
) -> None:
    # A background import of the mirror raced the branch map's import of
    # SQLAlchemy here: `KeyError: 'sqlalchemy'`, 10 times of 10.
    ws = git_workspace(server, tmp_path / "repo")
    ws.write("hello.py", HELLO)
    commit_all(ws.root, "hello")
    ws.start_agent("hello.py", concurrency=1)
    run = ws.cli_json("submit", "hello.py", "greet", "Ada", "--wait")
    assert run["state"] == "succeeded"
    for _ in range(5):
        shown = ws.cli("runs", "show", run["id"])
        assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
        assert shown.stdout.splitlines()[0].startswith(f"Run {run['id']}  hello:greet  succeeded")
    ws.stop_agents()


def test_names_are_matched_whole(server: ServerProcess, workspace: Workspace) -> None:
    # `re.match` with `$` let a final newline through, into a file name.
    before = sorted(p.name for p in (server.data_dir / "projects").iterdir())
    one_line_error(workspace.cli("projects", "create", "p2\n"), "invalid project name 'p2\\n'")
    one_line_error(workspace.cli("envs", "create", "e2\n"), "invalid environment name 'e2\\n'")
    one_line_error(workspace.cli("runs", "list", "--env", "production\n"), "invalid environment")
    with httpx.Client(base_url=server.url) as client:
        refused = client.post("/api/projects", json={"name": "p2\n"})
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid")
        environments = f"/api/projects/{workspace.project}/environments"
        assert client.post(environments, json={"name": "e2\n"}).status_code == 422
    assert sorted(p.name for p in (server.data_dir / "projects").iterdir()) == before


def test_the_host_check_reads_the_header_as_http_defines_it(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        for host in ("127.0.0.1", f"127.0.0.1:{server.port}", "LOCALHOST:1", "[::1]:7777"):
            assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
        for host in (
            "127.0.0.1:1@evil.example",  # user information: the host is evil.example
            "evil.example#127.0.0.1",
            "127.0.0.1/x",
            "127.0.0.1:7777:8",
            "[::1",
            "",
            "xn--zz",  # not punycode: the parser raised, which must not be a 500
            "é".encode("latin-1"),  # a byte beyond ASCII, as a client may send it
        ):
            refused = client.get("/api/projects", headers={"Host": host})
            assert refused.status_code == 403, host
            assert refused.json()["code"] == "forbidden"


FAILING = """
    import coflux as cf

    @cf.task()
    def greeting(name: str) -> str:
        if name == "nobody":
            raise ValueError("no one to greet")
        return f"Hello, {name}!"

    @cf.workflow()
    def greet(name: str) -> str:
        return greeting(name)

    @cf.workflow()
    def big() -> str:
        return "x" * 1_000_000  # uploaded as a blob, over HTTP
"""


def _execution_lines(log: str) -> list[str]:
    """The agent's lines without their time of day (``HH:MM:SS``)."""
    return [line[9:] for line in log.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]


def test_an_agent_prints_one_line_per_execution_and_no_http_requests(
    workspace: Workspace,
) -> None:
    workspace.write("hello.py", FAILING)
    workspace.start_agent("hello.py", concurrency=1)
    ok = workspace.cli_json("submit", "hello.py", "greet", "Ada", "--wait")
    failed = workspace.cli("submit", "hello.py", "greet", "nobody", "--wait", "--json")
    assert failed.returncode == 1
    bad = json.loads(failed.stdout)["id"]
    big = workspace.cli_json("submit", "hello.py", "big", "--wait")  # a blob upload

    def ended() -> list[str]:
        lines = _execution_lines(workspace.agent_log())
        return lines if sum(":1:1  " in line for line in lines) == 3 else []

    lines = wait_until(ended)
    assert "HTTP Request" not in workspace.agent_log()
    assert lines[0].startswith(f"connected to {workspace.server} as session ")
    shapes = [re.sub(r"  \d+(\.\d+)?m?s$", "  <duration>", line) for line in lines[1:]]
    assert shapes == [
        f"hello:greeting  {ok['id']}:2:1  succeeded  <duration>",
        f"hello:greet  {ok['id']}:1:1  succeeded  <duration>",
        f"hello:greeting  {bad}:2:1  failed (ValueError)  <duration>",
        f"hello:greet  {bad}:1:1  failed (ValueError)  <duration>",
        f"hello:big  {big['id']}:1:1  succeeded  <duration>",
    ]
    workspace.stop_agents()

    # -q: warnings and errors only; -v: the HTTP requests too.
    workspace.start_agent("hello.py", concurrency=1, args=("-q",))
    run = workspace.cli_json("submit", "hello.py", "greet", "Bo", "--wait")
    workspace.stop_agents()
    quiet = workspace.agent_log().split(f"{big['id']}:1:1", 1)[1]
    assert run["id"] not in quiet and "connected to" not in quiet
    verbose_log = workspace.root / "verbose.log"
    with open(verbose_log, "wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "coflux", "agent", "hello.py", "-v"],
            cwd=workspace.root,
            env=workspace.environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "connected to" in verbose_log.read_text())
        workspace.cli_json("submit", "hello.py", "big", "--wait")
        wait_until(lambda: "HTTP Request: " in verbose_log.read_text())
    finally:
        agent.terminate()
        agent.wait(10)
    one_line_error(workspace.cli("agent", "hello.py", "-v", "-q"), "contradict")


def test_dev_prints_the_page_of_its_environment(workspace: Workspace) -> None:
    workspace.write("hello.py", HELLO)
    log = workspace.root / "dev.log"
    # Into a shared server's production, dev serves the working tree only when told.
    dev = workspace.start_dev(log, "hello.py", "--allow-dirty")
    try:
        page = f"{workspace.server}/projects/{workspace.project}?env=production"
        wait_until(lambda: page in log.read_text().splitlines() or dev.poll() is not None, 30)
        assert page in log.read_text().splitlines(), log.read_text()
        assert httpx.get(page).status_code == 200
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(20)


def test_shell_completion_for_bash_zsh_and_fish(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def sh(script: str, **extra: str) -> str:
        done = subprocess.run(
            ["bash", "-c", script],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        return done.stdout

    # The script `--install-completion` writes for bash, loaded and asked as bash would.
    script = sh("coflux --show-completion; true")  # `; true`: bash stays coflux's parent
    assert "complete -o default -F _coflux_completion coflux" in script
    completed = sh(
        'eval "$(coflux --show-completion; true)"; COMP_WORDS=(coflux ru); COMP_CWORD=1; '
        '_coflux_completion coflux; echo "${COMPREPLY[@]}"'
    )
    assert completed.split() == ["run", "runs"]
    # `--install-completion` writes that script and sources it from ~/.bashrc.
    home = tmp_path / "home"
    home.mkdir()
    sh("coflux --install-completion; true", HOME=str(home))
    assert (home / ".bash_completions" / "coflux.sh").read_text().strip() == script.strip()
    assert f"source '{home}/.bash_completions/coflux.sh'" in (home / ".bashrc").read_text()
    completed = sh(
        "source ~/.bashrc; COMP_WORDS=(coflux runs s); COMP_CWORD=2; "
        '_coflux_completion coflux; echo "${COMPREPLY[@]}"',
        HOME=str(home),
    )
    assert completed.split() == ["show"]
    # What the zsh and fish scripts ask.
    zsh = sh("coflux", _COFLUX_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="coflux runs sh")
    assert '"show":"Show a run as a tree of steps' in zsh
    fish = sh(
        "coflux",
        _COFLUX_COMPLETE="complete_fish",
        _TYPER_COMPLETE_ARGS="coflux runs ",
        _TYPER_COMPLETE_FISH_ACTION="get-args",
    )
    assert [line.split("\t")[0] for line in fish.splitlines()] == ["list", "show", "diff"]
