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


#: What a cold read command against a shared server never imports (issue 25):
#: the ORM and gitpython (the mirror, the branch map and the queue are read
#: with sqlite3, the branch from .git/HEAD); httpx and what it imports (GETs
#: to an http:// server go through http.client); pydantic (typer 0.29 builds
#: its adapters only for values that need one); the SDK (``import coflux`` is
#: lazy, values are shown by ``coflux.records.values``); rich's tables for
#: ``--json`` (a table without it).
NOT_FOR_READS = (
    *HEAVY,
    "httpcore",
    "h11",
    "anyio",
    "certifi",
    "pydantic",
    "pydantic_core",
    "typer._adapters",
    "coflux.context",
    "coflux.decorators",
    "coflux.serialization",
    "coflux.assets",
    "coflux.cache",
    "rich.table",
)


def modules_after(code: str, prefixes: tuple[str, ...], cwd: Path, env: dict[str, str]) -> set[str]:
    """The modules named by ``prefixes`` (or under them) imported after running ``code``."""
    probe = (
        f"{code}\nimport sys\n"
        # (None in sys.modules is an import blocked, not made: httpx._main.)
        f"sys.stderr.write('LOADED:' + ','.join(m for m, v in sys.modules.items() "
        f"if v is not None and any(m == p or m.startswith(p + '.') for p in {prefixes!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd, env=env
    )
    return {m for m in result.stderr.rsplit("LOADED:", 1)[1].strip().split(",") if m}


#: The CLI's own modules every command imports: the entry point, the lazy root,
#: typer's coercion and the shared options.
CLI_BASE = {"coflux.cli", "coflux.cli.main", "coflux.cli.lazy", "coflux.cli.coercion"}


def test_read_commands_against_a_server_load_only_what_they_use(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`runs list`, `runs show`, `status` and `logs` against a shared server, from a git
    workspace whose environment comes from its branch, import none of
    ``NOT_FOR_READS`` (most of their start-up before, issue 25) and, of the
    command modules, only their own."""
    ws = git_workspace(server, tmp_path / "repo")
    ws.write(
        "flows.py", "import coflux as cf\n\n@cf.workflow()\ndef hello() -> str:\n    return 'hi'\n"
    )
    commit_all(ws.root, "flows")
    ws.cli("register", "flows.py", check=True)
    run_id = ws.cli_json("submit", "flows.py", "hello")["id"]
    ws.cli("runs", "list", check=True)  # the workspace's state.db exists from now on
    runs = {"coflux.cli.common", "coflux.cli.runs", "coflux.cli.diff"}
    for args, cli_modules in (
        (("runs", "list", "--json"), runs),
        (("runs", "list"), {*runs, "coflux.cli.render", "rich.table"}),  # a table: rich's
        (("runs", "show", run_id, "--json"), runs),
        (("status", "--json"), {"coflux.cli.common", "coflux.cli.sync"}),
        (("logs", run_id), {"coflux.cli.common", "coflux.cli.logs"}),
    ):
        loaded = modules_after(
            cli_probe(*args), (*NOT_FOR_READS, "coflux.cli"), cwd=ws.root, env=ws.environ
        )
        assert sorted(loaded) == sorted(CLI_BASE | cli_modules), args
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
