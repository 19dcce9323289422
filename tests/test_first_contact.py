"""What a new user meets first: `runs show` from a git checkout, names, the Host check,
agents' output.

A real server and real CLI and agent processes; a real git repository where
the environment is derived from the branch.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import ServerProcess, Workspace, commit_all, git_workspace, one_line_error

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
        ):
            refused = client.get("/api/projects", headers={"Host": host})
            assert refused.status_code == 403, host
            assert refused.json()["code"] == "forbidden"
