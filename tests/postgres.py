"""A real PostgreSQL server for the tests, on a free loopback port.

``COFLUX_TEST_DATABASE_URL`` names one to use (a database the tests may create
databases beside); otherwise, when PostgreSQL is installed (Debian's
``postgresql`` package), a throwaway cluster is made with ``initdb`` in a
temporary folder. PostgreSQL refuses to run as root, so when the tests do,
the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url


def binaries() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are, if PostgreSQL is installed."""
    found = shutil.which("pg_config")
    if found:
        bindir = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout
        if (Path(bindir.strip()) / "initdb").exists():
            return Path(bindir.strip())
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class Postgres:
    """A PostgreSQL server the tests can make databases in."""

    def __init__(self, url: str) -> None:
        self.url = url

    def new_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"coflux_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._libpq(self.url), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def connect(self, url: str) -> psycopg.Connection:
        return psycopg.connect(self._libpq(url), autocommit=True)

    @staticmethod
    def _libpq(url: str) -> str:
        return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    def stop(self) -> None:
        pass


class Cluster(Postgres):
    """``initdb`` in ``root``, started on ``port``; stopped (and removed) by ``stop``."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        super().__init__(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        self.bindir = bindir
        self.root = root
        self.port = port
        self.data = root / "data"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c shared_buffers=64MB"
        )
        log = str(self.root / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
