"""Server settings: where data lives and how long agents may stay silent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...records.connection import MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".coflux/server")
    #: PostgreSQL for every project (``postgresql://...``); None: SQLite files in ``data_dir``.
    database_url: str | None = None
    #: The URL other server processes on the same database reach this one at
    #: (they forward requests for the projects it orchestrates); default from
    #: host and port.
    advertise_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 7777
    #: An agent not heard from for this long has its executions abandoned.
    agent_timeout: float = 30.0
    #: An execution assigned this long ago that its agent neither started nor
    #: lists as received is assigned again (I4: its ``execute`` was lost).
    start_timeout: float = 10.0
    #: Largest JSON request body accepted (bytes).
    max_body: int = MAX_MESSAGE_BYTES
    #: Largest blob accepted (bytes).
    max_blob: int = 64 * 1024 * 1024
    #: SQLite's ``synchronous`` for project databases: FULL (an acknowledged change
    #: survives power loss) or NORMAL (survives a crash of the server process only).
    synchronous: str = "FULL"
    #: Require a project token on every route, connection and page (``--auth``).
    auth: bool = False
    #: The name clients reach the server by, besides loopback ones (``Host`` allow-list).
    public_host: str | None = None
    #: Serve beyond loopback without auth (``--insecure``): no ``Host`` check unless
    #: ``public_host`` is set.
    insecure: bool = False
    #: Where projects' blobs live: None for ``data_dir/blobs``, ``s3://BUCKET/PREFIX``
    #: or ``file:///PATH`` (see ``blobstores``).
    blob_store: str | None = None

    @property
    def heartbeat_interval(self) -> float:
        """How often agents send heartbeats (told in the reply to their hello):
        several times per agent timeout, so a task longer than the timeout
        never looks silent, and often enough that an ``execute`` that never
        arrived is noticed soon after the start timeout."""
        return min(5.0, self.agent_timeout / 6, self.start_timeout / 2)

    @property
    def advertised_url(self) -> str:
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.getfqdn()
        return f"http://{host}:{self.port}"

    @property
    def projects_dir(self) -> Path:
        return self.data_dir / "projects"

    def blobs_dir(self, project: str) -> Path:
        return self.data_dir / "blobs" / project
