"""What a new user meets first: `runs show` from a git checkout, names, the Host check,
agents' output.

A real server and real CLI and agent processes; a real git repository where
the environment is derived from the branch.
"""

from __future__ import annotations

from pathlib import Path

from conftest import ServerProcess, commit_all, git_workspace

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
