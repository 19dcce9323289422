"""Where projects' data lives: one SQLite file per project (the default), or one
schema per project in a PostgreSQL database (``coflux server --database-url``).

Both go through the same SQLAlchemy code: a project's engine resolves the
tables' plain names to its own file or schema, so no query knows which
backend it runs on. On PostgreSQL every project shares one pool of
connections (a server may host hundreds of projects, and PostgreSQL allows a
few hundred connections in all): a project's engine is a view of the shared
one that sets the connection's ``search_path`` to its schema when it takes
one from the pool, if it isn't that already.
The orchestrator writes through one long-lived connection of its project's
engine; read-only API handlers use the others, beside the writer (SQLite in
WAL mode, PostgreSQL by design).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from ...errors import ConfigError
from ...records.names import validate_project_name
from .schema import migrate

log = logging.getLogger("coflux.server")

SYNCHRONOUS_MODES = ("FULL", "NORMAL")
#: A PostgreSQL schema holding a project is named for it with this prefix.
SCHEMA_PREFIX = "project_"


class Database:
    """The projects' storage: which projects exist, and an engine for each."""

    kind = ""
    #: Projects whose schema this process upgraded, with the version each was at.
    migrated: dict[str, str]

    def exists(self, project: str) -> bool:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    def open(self, project: str) -> Engine:
        """The engine of ``project``'s data, created (and migrated) if needed."""
        raise NotImplementedError

    def engine_for(self, name: str) -> Engine:
        """An engine for server-wide tables (tokens, leases) under ``name``."""
        raise NotImplementedError

    def release(self, engine: Engine) -> None:
        """Done with a project's engine (``open``): its connections can go."""
        engine.dispose()

    def close(self) -> None:
        pass

    def migrate_all(self) -> dict[str, str]:
        """Bring every project to the newest schema; return those that changed,
        with the version each was at. A project newer than this server stops
        it (``ConfigError``, one clear line), untouched."""
        for project in self.names():
            self.release(self.open(project))
        return dict(self.migrated)

    def _migrated(self, project: str, engine: Engine) -> Engine:
        upgraded_from = migrate(engine)
        if upgraded_from is not None:
            self.migrated[project] = upgraded_from
        return engine


class SQLiteDatabase(Database):
    kind = "sqlite"

    def __init__(self, directory: Path, synchronous: str = "FULL") -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        self.directory = directory
        self.synchronous = synchronous
        self.migrated = {}

    def _path(self, project: str) -> Path:
        return self.directory / f"{validate_project_name(project)}.sqlite"

    def exists(self, project: str) -> bool:
        return self._path(project).exists()

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.sqlite"))

    def open(self, project: str) -> Engine:
        """The orchestrator commits a loop pass's changes in one transaction, so
        ``synchronous=FULL`` costs one fsync per batch of events, not per task."""
        path = self._path(project)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{path}",
            connect_args={"check_same_thread": False},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", _sqlite_configurer(self.synchronous))
        return self._migrated(project, engine)

    def engine_for(self, name: str) -> Engine:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        return create_engine(f"sqlite:///{self.directory.parent / f'{name}.sqlite'}")


def _sqlite_configurer(synchronous: str) -> Callable[[Any, Any], None]:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        mode = cursor.fetchone()[0]
        if mode.lower() != "wal":
            # Some network filesystems silently refuse WAL; readers would then block the writer.
            log.warning(
                "SQLite refused WAL mode (journal_mode=%s); expect slower concurrent reads", mode
            )
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return configure


class PostgresDatabase(Database):
    """Every project in one PostgreSQL database, each in a schema of its own (so
    projects stay isolated), each with a small pool of connections."""

    kind = "postgresql"

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = postgres_url(url)
        self.migrated = {}
        self._admin = create_engine(
            self.url, pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True
        )
        event.listen(self._admin, "engine_connect", _use_schema)
        try:
            with self._admin.connect() as c:
                c.execute(text("SELECT 1"))
        except Exception as e:  # the driver's own error types vary; one clear line
            raise ConfigError(
                f"can't reach PostgreSQL at {_safe(self.url)}: {_first_line(e)}"
            ) from None

    def exists(self, project: str) -> bool:
        schema = SCHEMA_PREFIX + validate_project_name(project)
        with self._admin.connect() as c:
            found = c.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            )
            return found.first() is not None

    def names(self) -> list[str]:
        with self._admin.connect() as c:
            rows = c.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata "
                    "WHERE starts_with(schema_name, :prefix) ORDER BY schema_name"
                ),
                {"prefix": SCHEMA_PREFIX},
            )
            return [r[0][len(SCHEMA_PREFIX) :] for r in rows]

    def open(self, project: str) -> Engine:
        engine = self.engine_for(SCHEMA_PREFIX + validate_project_name(project))
        return self._migrated(project, engine)

    def engine_for(self, name: str) -> Engine:
        """An engine whose connections see the tables of schema ``name`` (made if
        missing), from the shared pool."""
        with self._admin.begin() as c:
            c.execute(text(f"CREATE SCHEMA IF NOT EXISTS {_quote(name)}"))
        return self._admin.execution_options(coflux_schema=name)

    def release(self, engine: Engine) -> None:
        pass  # its connections are the shared pool's

    def close(self) -> None:
        self._admin.dispose()


def _use_schema(connection: Any) -> None:
    """On taking a connection for a project: point it at the project's schema."""
    schema = connection.get_execution_options().get("coflux_schema")
    pooled = connection.connection  # its ``info`` lives as long as the connection
    if schema is None or pooled.info.get("search_path") == schema:
        return
    connection.exec_driver_sql(f"SET search_path TO {_quote(schema)}")
    # Committed, so a rollback when it goes back to the pool doesn't undo it.
    connection.commit()
    pooled.info["search_path"] = schema


def _quote(identifier: str) -> str:
    """A PostgreSQL identifier, quoted (project names allow '-' and capitals)."""
    return '"' + identifier.replace('"', '""') + '"'


def postgres_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3, the driver Coflux uses."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(
            f"invalid --database-url {url!r}: expected postgresql://USER@HOST:PORT/DATABASE"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"--database-url must be a PostgreSQL URL (postgresql://...), not {parsed.drivername}"
        )
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError(
            "PostgreSQL needs the psycopg driver: pip install 'coflux[postgres]'"
        ) from None
    return parsed.render_as_string(hide_password=False)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _first_line(error: Exception) -> str:
    return (str(getattr(error, "orig", None) or error).strip().splitlines() or ["?"])[0]


def open_database(database_url: str | None, projects_dir: Path, synchronous: str) -> Database:
    """PostgreSQL when a URL is given, else SQLite files in ``projects_dir``."""
    if database_url:
        return PostgresDatabase(database_url)
    return SQLiteDatabase(projects_dir, synchronous)
