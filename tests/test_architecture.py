"""The layout holds: one-way imports, a light SDK and CLI, commands that document themselves."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ServerProcess, commit_all, git_workspace

import coflux

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("fastapi", "sqlalchemy", "sqlmodel", "git", "httpx", "uvicorn")


def loaded_after(
    code: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> list[str]:
    """Which heavy libraries are imported after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys\n"
        f"sys.stderr.write('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd, env=env
    )
    loaded = result.stderr.rsplit("LOADED:", 1)[1].strip()
    return [m for m in loaded.split(",") if m]


def test_import_coflux_loads_no_server_client_or_git_libraries() -> None:
    assert loaded_after("import coflux") == []


def test_coflux_help_loads_no_server_client_or_git_libraries() -> None:
    code = (
        "import sys\nsys.argv = ['coflux', '--help']\n"
        "from coflux.cli.main import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert loaded_after(code) == []


def cli_probe(*args: str) -> str:
    """Code running ``coflux ARGS`` in the probe's interpreter; it fails unless the command does."""
    return (
        f"import sys\nsys.argv = ['coflux', *{args!r}]\n"
        "from coflux.cli.main import main\ntry:\n    main()\nexcept SystemExit as e:\n"
        "    if e.code not in (0, None):\n        raise"
    )


def test_read_commands_against_a_server_load_no_orm_or_git(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`runs list`, `runs show`, `status` and `logs` against a shared server, from a git
    workspace whose environment comes from its branch, import neither SQLAlchemy/SQLModel
    (the mirror, the branch map and the queue are read with sqlite3) nor gitpython (the
    branch is read from .git/HEAD): most of their start-up before (issue 25)."""
    ws = git_workspace(server, tmp_path / "repo")
    ws.write(
        "flows.py", "import coflux as cf\n\n@cf.workflow()\ndef hello() -> str:\n    return 'hi'\n"
    )
    commit_all(ws.root, "flows")
    ws.cli("register", "flows.py", check=True)
    run_id = ws.cli_json("submit", "flows.py", "hello")["id"]
    ws.cli("runs", "list", check=True)  # the workspace's state.db exists from now on
    for args in (
        ("runs", "list", "--json"),
        ("runs", "list"),
        ("runs", "show", run_id, "--json"),
        ("status", "--json"),
        ("logs", run_id),
    ):
        loaded = loaded_after(cli_probe(*args), cwd=ws.root, env=ws.environ)
        assert loaded == ["httpx"], args
    # The mirror holds what was shown (tests/test_offline.py reads it back offline).
    shown = ws.cli_json("runs", "show", run_id)
    with sqlite3.connect(ws.root / ".coflux" / "state.db") as c:
        rows = c.execute("SELECT id, view, document FROM runs").fetchall()
        lists = c.execute("SELECT environment, runs FROM run_lists").fetchall()
    assert [(i, v, json.loads(d)) for i, v, d in rows] == [(run_id, "production", shown)]
    assert [(e, [r["id"] for r in json.loads(r)]) for e, r in lists] == [("production", [run_id])]
    assert ws.cli_json("status")["branches"] == [{"branch": "main", "environment": "production"}]


def test_the_plain_state_connection_knows_every_table_of_the_schema() -> None:
    from coflux.local import state, state_connection

    assert set(state.metadata.tables) == state_connection.TABLES


def test_import_contracts_hold() -> None:
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 kept, 0 broken" in result.stdout


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "check", "coflux", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_public_api_is_pinned() -> None:
    assert coflux.__all__ == [
        "Abandoned",
        "Asset",
        "Cancelled",
        "CofluxError",
        "Execution",
        "ExecutionError",
        "RemoteError",
        "SerializationError",
        "Target",
        "checkpoint",
        "execution_id",
        "log_debug",
        "log_error",
        "log_info",
        "log_warning",
        "persist_asset",
        "restore_asset",
        "sensor",
        "stub",
        "suspend",
        "suspense",
        "task",
        "workflow",
    ]


def _commands() -> list[tuple[str, object]]:
    import typer.main

    from coflux.cli.main import app

    group = typer.main.get_command(app)
    found = []

    def walk(command, path: str) -> None:  # type: ignore[no-untyped-def]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found.append((path, command))

    walk(group, "")
    return found


def test_every_command_has_help_with_an_example_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = _commands()
    assert len(commands) >= 13
    for path, command in commands:
        help_text = command.help or ""  # type: ignore[attr-defined]
        assert help_text.strip(), f"coflux {path} has no help"
        assert re.search(r"Example:\s+coflux " + re.escape(path), help_text), (
            f"coflux {path}: no example"
        )
        assert f"coflux {path}" in readme, f"coflux {path} is not in the README"
