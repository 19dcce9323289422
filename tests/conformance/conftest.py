"""The conformance suite's harness: each documented behaviour of Coflux 0.6,
run as a program written from its documentation page, in both execution modes.

- ``embedded``: ``coflux run MODULE WORKFLOW --json`` with no server configured
  (the server runs in the command's process, over ``.coflux/`` of the folder);
- ``server``: a real ``coflux server`` (the session's) and one agent per test
  module hosting the page's programs, runs started with ``coflux submit --wait``.

Programs live in ``programs/``; a test module names the ones it needs in
``PROGRAMS``. Each run returns the ``runs show --json`` document.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_ENV, ServerProcess, Workspace, new_workspace

PROGRAMS = Path(__file__).parent / "programs"


def _copy_programs(names: list[str], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(PROGRAMS / f"{name}.py", root / f"{name}.py")


@dataclass
class Mode:
    """One way of running programs: ``run`` a workflow to its end, ``cli`` anything else."""

    name: str
    root: Path
    env: dict[str, str]
    #: The server mode's workspace (its agents), None when embedded.
    workspace: Workspace | None = None

    def in_environment(self, environment: str, base: str = "production") -> Mode:
        """The same programs in another environment (made with ``base`` as its base);
        through a server, with an agent of its own there."""
        created = self.cli("envs", "create", environment, "--base", base)
        assert created.returncode == 0, created.stderr
        env = {**self.env, "COFLUX_ENV": environment}
        if self.workspace is not None:
            names = [p.name for p in sorted(self.root.glob("*.py"))]
            self.workspace.start_agent(*names, env={"COFLUX_ENV": environment})
        return Mode(self.name, self.root, env, self.workspace)

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "coflux", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, program: str, workflow: str, *args: Any, ok: bool = True) -> dict[str, Any]:
        """Run ``program:workflow`` with JSON arguments; the run's ``runs show --json``."""
        texts = [json.dumps(a) for a in args]
        if self.name == "embedded":
            result = self.cli("run", f"{program}.py", workflow, *texts, "--json")
        else:
            result = self.cli("submit", f"{program}.py", workflow, *texts, "--wait", "--json")
        assert result.returncode == (0 if ok else 1), result.stderr + result.stdout
        return json.loads(result.stdout)

    def show(self, run_id: str) -> dict[str, Any]:
        result = self.cli("runs", "show", run_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def logs(self, run_id: str) -> list[dict[str, Any]]:
        result = self.cli("logs", run_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def embedded_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFLUX_")}
    return {**env, **FAST_ENV, "COFLUX_ENV": "production"}


@pytest.fixture(scope="module")
def hosted(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Workspace]:
    """The session's server, a project of this module's, and an agent hosting its programs."""
    names = request.module.PROGRAMS
    ws = new_workspace(server, tmp_path_factory.mktemp("conformance") / "ws")
    _copy_programs(names, ws.root)
    ws.start_agent(*(f"{n}.py" for n in names), concurrency=8)
    yield ws
    ws.stop_agents()


@pytest.fixture(scope="module")
def hosted_stubs(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workspace]:
    """Two agents: one hosting the stub's repository, one the module calling it."""
    ws = new_workspace(server, tmp_path_factory.mktemp("conformance-stubs") / "ws")
    _copy_programs(["other_repo", "dice"], ws.root)
    ws.start_agent("other_repo.py")
    ws.start_agent("dice.py")
    yield ws
    ws.stop_agents()


@pytest.fixture(scope="module")
def embedded_root(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    root = tmp_path_factory.mktemp("conformance-embedded") / "ws"
    _copy_programs(request.module.PROGRAMS, root)
    return root


@pytest.fixture(params=["embedded", "server"])
def mode(request: pytest.FixtureRequest) -> Mode:
    if request.param == "embedded":
        root = request.getfixturevalue("embedded_root")
        return Mode("embedded", root, embedded_env(root))
    ws: Workspace = request.getfixturevalue("hosted")
    return Mode("server", ws.root, ws.environ, ws)


def step(document: dict[str, Any], target: str, index: int = 0) -> dict[str, Any]:
    """The ``index``-th step of ``target`` ("module:name") in a run document."""
    steps = [s for s in document["steps"] if s["target"] == target]
    assert len(steps) > index, [s["target"] for s in document["steps"]]
    return steps[index]


def executions(document: dict[str, Any], target: str) -> list[dict[str, Any]]:
    return [e for s in document["steps"] if s["target"] == target for e in s["executions"]]


def seconds(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp).timestamp()


Run = Callable[..., dict[str, Any]]
