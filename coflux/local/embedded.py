"""The embedded server: the real server, run in-process on loopback over ``.coflux/server``.

When no server is configured, commands talk to this one. One process at a
time hosts it (an exclusive lock on ``.coflux/server/embedded.lock``); it
writes its URL beside the lock, and other commands that start meanwhile use
that process's server instead of opening the same database twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import httpx

from ..errors import Conflict, ServerUnreachable
from .config import Config

if TYPE_CHECKING:
    import uvicorn


class EmbeddedServer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock_file: TextIO | None = None

    @property
    def _info_path(self) -> Path:
        return self.data_dir / "embedded.json"

    def running_elsewhere(self) -> str | None:
        """The URL of the embedded server another process hosts, if any."""
        if not self._info_path.exists():
            return None
        try:
            url = json.loads(self._info_path.read_text())["url"]
            httpx.get(f"{url}/api/health", timeout=2).raise_for_status()
            return url
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            return None

    def try_lock(self) -> bool:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data_dir / "embedded.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            return False

    def start(self) -> str:
        import uvicorn

        from ..remote.server.app import create_app
        from ..remote.server.settings import Settings

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # One developer's machine: a crash of the operating system may lose the last
        # commits, which a re-run makes again; NORMAL spares an fsync per commit.
        settings = Settings(data_dir=self.data_dir, port=port, synchronous="NORMAL")
        config = uvicorn.Config(
            create_app(settings), log_level="warning", lifespan="on", ws="websockets-sansio"
        )
        server = uvicorn.Server(config)
        # uvicorn before 0.29 had this hook; later ones have no such attribute (their
        # capture_signals leaves signals alone outside the main thread, as here).
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="coflux-server"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ServerUnreachable("the embedded server failed to start")
            time.sleep(0.005)
        self.url = f"http://127.0.0.1:{port}"
        self._info_path.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self._info_path.unlink()
        if self._lock_file is not None:
            self._lock_file.close()


@contextlib.contextmanager
def embedded_server(config: Config) -> Iterator[str]:
    """The URL of the workspace's embedded server: another process's, or one started here."""
    server = EmbeddedServer(config.data_dir / "server")
    deadline = time.monotonic() + 10
    while True:
        url = server.running_elsewhere()
        if url is not None:
            yield url
            return
        if server.try_lock():
            break
        if time.monotonic() > deadline:
            raise ServerUnreachable(
                f"another process holds the embedded server in {server.data_dir} but doesn't answer"
            )
        time.sleep(0.05)  # the other process is starting it
    try:
        url = server.start()
        _ensure_project(url, config.project, config.production)
        yield url
    finally:
        server.stop()


def _ensure_project(url: str, project: str, production: str) -> None:
    """The embedded server starts with the configured project and ``production``."""
    from ..remote.client import Client

    with Client(url, project) as client:
        with contextlib.suppress(Conflict):
            client.create_project(project)
        if not any(e["name"] == production for e in client.list_environments()):
            with contextlib.suppress(Conflict):
                client.create_environment(production)
