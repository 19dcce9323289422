"""The layout holds: one-way imports, a light SDK and CLI, commands that document themselves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import coflux

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("fastapi", "sqlalchemy", "sqlmodel", "git", "httpx", "uvicorn")


def loaded_after(code: str) -> list[str]:
    """Which heavy libraries are imported after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys\n"
        f"sys.stderr.write('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
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
