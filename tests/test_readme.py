"""The README's commands work when pasted into a fresh shell, in order.

Shell blocks after a ``<!-- runnable -->`` line are run, command by command,
with bash in a throwaway git repository holding the repository's examples, a HOME
of their own and the virtual environment activated (as the README's set-up
says), against real server and agent processes. A block split by ``#
terminal N`` comments is several terminals: each but the last ends in a
long-running command (a server, an agent), started in the background and
waited for until it says it is ready. Substituted, as a reader would:
``7777`` by a free port, and ``RUN_ID`` by the last run ID printed before.
Every command must exit 0 without a traceback.

Blocks after ``<!-- install -->`` (the virtual environment and ``pip
install``) are what ``.ci/run`` runs, so they are checked against it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import FAST_ENV, free_port, git, wait_until

from coflux.records.references import RUN_ID_LENGTH

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
_BLOCK = re.compile(r"<!-- (runnable|install) -->\n```sh\n(.*?)\n```", re.S)
_RUN_ID = re.compile(rf"\b[0-9A-HJKMNP-TV-Z]{{{RUN_ID_LENGTH}}}\b")
#: What a long-running command prints once it is ready for the next terminal.
_READY = {"coflux server": "Coflux server on", "coflux agent": "connected to"}


def _blocks(kind: str) -> list[str]:
    return [body for found, body in _BLOCK.findall(README) if found == kind]


@dataclass
class Terminal:
    commands: list[str] = field(default_factory=list)


def _terminals(block: str) -> list[Terminal]:
    terminals = [Terminal()]
    for line in block.splitlines():
        if re.match(r"#\s*terminal \d+", line):
            if terminals[-1].commands:
                terminals.append(Terminal())
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            terminals[-1].commands.append(line)
    return terminals


class Shell:
    """Runs pasted commands as a reader's shell would: exports carry over."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int) -> None:
        self.cwd, self.env, self.port = cwd, env, port
        self.output = ""  # everything printed so far, to take placeholders from
        self.background: list[subprocess.Popen[str]] = []

    def _script(self, exports: list[str], command: str, replace: bool = False) -> str:
        command = ("exec " if replace else "") + command.replace("7777", str(self.port))
        if "RUN_ID" in command:
            ids = _RUN_ID.findall(self.output)
            assert ids, f"no run ID printed before {command!r}"
            command = command.replace("RUN_ID", ids[-1])
        return "\n".join([*(e.replace("7777", str(self.port)) for e in exports), command])

    def run(self, exports: list[str], command: str) -> str:
        done = subprocess.run(
            ["bash", "-euc", self._script(exports, command)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.output += done.stdout + done.stderr
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done.stdout

    def start(self, exports: list[str], command: str, log: Path) -> None:
        with open(log, "w") as out:
            process = subprocess.Popen(
                ["bash", "-euc", self._script(exports, command, replace=True)],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        self.background.append(process)
        marker = next((m for prefix, m in _READY.items() if command.startswith(prefix)), None)
        assert marker, f"a terminal ends in {command!r}, which nothing waits for"

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{command!r} exited: {log.read_text()}")
            return marker in log.read_text()

        wait_until(ready, timeout=60)

    def stop(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.background:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    # "From a clone of this repository": a git repository on main, with the examples.
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "examples", clone / "examples")
    git(clone, "init", "-q", "-b", "main")
    (clone / ".gitignore").write_text(".coflux/\n.venv/\n")
    git(clone, "add", "-A")
    git(clone, "-c", "user.email=a@example.com", "-c", "user.name=A", "commit", "-qm", "clone")
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFLUX_")}
    env.update(FAST_ENV)
    # The README's `source .venv/bin/activate`: this environment's `coflux` first.
    env.update(HOME=str(home), VIRTUAL_ENV=str(Path(bin_dir).parent))
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    opened = Shell(clone, env, free_port())
    yield opened
    opened.stop()


def test_the_readme_marks_its_runnable_blocks() -> None:
    runnable = _blocks("runnable")
    assert len(runnable) >= 2
    assert any("coflux run examples/hello.py greet Joe" in block for block in runnable)
    assert any("# terminal 3" in block for block in runnable)


@pytest.mark.parametrize("index", range(len(_blocks("runnable"))))
def test_a_runnable_readme_block_works_pasted(shell: Shell, index: int, tmp_path: Path) -> None:
    terminals = _terminals(_blocks("runnable")[index])
    for number, terminal in enumerate(terminals, 1):
        exports = [c for c in terminal.commands if c.startswith("export ")]
        commands = [c for c in terminal.commands if not c.startswith("export ")]
        last = len(terminals) > 1 and number < len(terminals)
        for command in commands[:-1] if last else commands:
            shell.run(exports, command)
        if last:
            shell.start(exports, commands[-1], tmp_path / f"terminal-{number}.log")


def test_ci_installs_exactly_as_the_readme_says() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    installs = [line for block in _blocks("install") for line in block.splitlines()]
    # The user's install (`-e .`) and the developer's (`-e '.[dev]'`, then the suite).
    assert [line for line in installs if "pip install" in line] == [
        "python3 -m venv .venv && .venv/bin/pip install -q -e .",
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && "
        ".venv/bin/python -m pytest -q",
    ]
    assert installs[-1] in ci, f".ci/run doesn't run the README's {installs[-1]!r}"
