"""Every mistake on the command line, of every command, is one ``error:`` line and exit 2.

The commands are discovered from the typer app (a new command is walked
without anyone listing it), and each gets each kind of mistake it can have:
an unknown subcommand or option, a missing or an extra argument, an option
without its value, a value of the wrong type or out of its range. These
fail while the command line is parsed, before anything runs, whichever
click the installed typer carries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import typer.main
from conftest import Workspace, free_port, one_line_error

from coflux.cli.main import app


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of ``coflux`` as (path, click command), the root first."""
    found = []

    def walk(path: tuple[str, ...], command: Any) -> None:
        found.append((path, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


def _kind(param: Any) -> str:
    """``int``, ``float``, ``bool`` or ``text``, for typer's own parameters (typer >= 0.29)
    and click's (earlier typer)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        annotation = descriptor.annotation
        return {int: "int", float: "float", bool: "bool"}.get(annotation, "text")
    name = getattr(param.type, "name", "").removesuffix(" range")  # IntRange: "integer range"
    return {"integer": "int", "float": "float", "boolean": "bool"}.get(name, "text")


def _range(param: Any) -> tuple[Any, Any]:
    holder = param if hasattr(param, "min") else param.type
    return getattr(holder, "min", None), getattr(holder, "max", None)


def _is_argument(param: Any) -> bool:
    return param.param_type_name == "argument"


def _required_arguments(command: Any) -> list[str]:
    return ["1" for p in command.params if _is_argument(p) and p.required]


def _mistakes() -> list[tuple[str, tuple[str, ...]]]:
    """(what kind of mistake, the command line) for every command."""
    cases: list[tuple[str, tuple[str, ...]]] = []
    for path, command in _commands():
        name = " ".join(path) or "coflux"
        cases.append((f"{name}: unknown option", (*path, "--no-such-option")))
        if hasattr(command, "commands"):
            cases.append((f"{name}: unknown command", (*path, "no-such-command")))
            continue
        params = [p for p in command.params if p.name not in ("help",)]
        required = [p for p in params if p.required]
        if required:
            cases.append((f"{name}: missing argument", path))
        given = tuple(_required_arguments(command))
        if not any(_is_argument(p) and (p.nargs == -1) for p in params):
            cases.append((f"{name}: extra argument", (*path, *given, "extra", "extra2")))
        for param in params:
            if _is_argument(param) or _kind(param) == "bool":
                continue
            option = param.opts[0]
            if param is params[-1] or param.name in ("server",):
                cases.append((f"{name}: {option} without a value", (*path, *given, option)))
            if _kind(param) in ("int", "float"):
                cases.append((f"{name}: {option} not a number", (*path, *given, option, "abc")))
            low, high = _range(param)
            if low is not None:
                cases.append(
                    (f"{name}: {option} below range", (*path, *given, option, str(low - 1)))
                )
            if high is not None:
                cases.append(
                    (f"{name}: {option} above range", (*path, *given, option, str(high + 1)))
                )
    return cases


MISTAKES = _mistakes()


def _run(args: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    # An unreachable server: a command that wrongly ran would fail, never start one.
    env = {**os.environ, "COFLUX_SERVER": f"http://127.0.0.1:{free_port()}", "CI": "1"}
    return subprocess.run(
        [sys.executable, "-m", "coflux", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_walk_covers_every_kind_of_mistake() -> None:
    kinds = {case.split(": ", 1)[1].split(" ", 1)[-1] for case, _ in MISTAKES}
    kinds |= {case.split(": ", 1)[1] for case, _ in MISTAKES}
    for kind in (
        "unknown command",
        "unknown option",
        "missing argument",
        "extra argument",
        "not a number",
        "below range",
        "above range",
        "without a value",
    ):
        assert kind in kinds, kind
    walked = {args[0] for _, args in MISTAKES if args}
    assert {"run", "submit", "runs", "server", "tokens", "agent", "dev", "logs"} <= walked


# About 120 processes of some 130 ms of CPU each: minutes on a loaded machine.
@pytest.mark.timeout(900)
def test_every_usage_mistake_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    # Processes in parallel (each is a real `coflux`), a few at a time on a small machine.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda case: _run(case[1], tmp_path), MISTAKES))
    wrong = []
    for (case, args), result in zip(MISTAKES, results, strict=True):
        lines = result.stderr.splitlines()
        if (
            result.returncode != 2
            or len(lines) != 1
            or not lines[0].startswith("error: ")
            or "Traceback" in result.stderr
            or result.stdout
        ):
            wrong.append(f"{case}: coflux {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    assert not wrong, f"{len(wrong)} of {len(MISTAKES)}:\n" + "\n".join(wrong)
    assert len(MISTAKES) > 100


def test_messages_say_what_and_where_to_look(tmp_path: Path) -> None:
    one_line_error(
        _run(("runz",), tmp_path), "error: no such command 'runz'", "'run'", "`coflux --help`"
    )
    missing = _run(("submit",), tmp_path)
    # click names the argument 'MODULE', typer's own click 'module'.
    one_line_error(missing, "(see `coflux submit --help`)")
    assert missing.stderr.lower().startswith("error: missing argument 'module'")
    one_line_error(
        _run(("runs", "list", "--limit", "0"), tmp_path),
        "error: invalid value for '--limit'",
        "`coflux runs list --help`",
    )
    one_line_error(_run(("logs", "R", "--env", "x"), tmp_path), "no such option", "--env")


def test_version_and_help(tmp_path: Path) -> None:
    from coflux.version import __version__

    version = _run(("--version",), tmp_path)
    assert (version.returncode, version.stdout, version.stderr) == (
        0,
        f"coflux {__version__}\n",
        "",
    )
    # A group given no subcommand answers with its help, as `--help` does.
    for args in ((), ("runs",)):
        shown = _run(args, tmp_path)
        assert shown.returncode == 0 and shown.stderr == ""
        assert shown.stdout.startswith(f"Usage: coflux {' '.join(args)}".rstrip() + " [OPTIONS]")


def test_server_refuses_a_port_out_of_range_and_an_unusable_data_dir(tmp_path: Path) -> None:
    one_line_error(
        _run(("server", "--port", "99999"), tmp_path), "invalid value for '--port'", "65535"
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    for args in (
        ("server", "--port", str(free_port())),
        ("server", "migrate"),
        ("tokens", "create", "--project", "p"),
    ):
        result = _run((*args, "--data-dir", str(blocker / "x")), tmp_path)
        assert result.returncode == 2
        one_line_error(result, f"{blocker / 'x'}", "Not a directory")


def test_tokens_list_of_a_server_without_tokens_is_empty(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    listed = _run(("tokens", "list", "--data-dir", str(data)), tmp_path)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "")
    listed = _run(("tokens", "list", "--data-dir", str(data), "--json"), tmp_path)
    assert (listed.returncode, json.loads(listed.stdout), listed.stderr) == (0, [], "")


@pytest.fixture
def registered(workspace: Workspace) -> Workspace:
    workspace.write(
        "flows.py",
        """
        import coflux as cf

        @cf.workflow()
        def size(value) -> int:
            return len(str(value))
        """,
    )
    workspace.cli("register", "flows.py", check=True)
    return workspace


def test_a_deeply_nested_json_argument(registered: Workspace) -> None:
    too_deep = "[" * 5000 + "]" * 5000
    one_line_error(
        registered.cli("submit", "flows.py", "size", too_deep), "nests deeper than 100 levels"
    )
    one_line_error(
        registered.cli("submit", "flows.py", "size", "[" * 101 + "]" * 101), "deeper than 100"
    )
    registered.start_agent("flows.py", concurrency=1)
    deepest = "[" * 100 + "]" * 100
    result = registered.cli_json("submit", "flows.py", "size", deepest, "--wait")
    assert (result["state"], result["result"]) == ("succeeded", 200)
