"""The version of a project's database schema, and bringing it up to date.

Versions are Alembic revisions (``migrations/versions``), the same for SQLite
and PostgreSQL. Opening a project's database:

- a new one gets today's tables and is stamped with the newest revision;
- one at the newest revision is used as it is (no Alembic import: opening a
  project stays fast for the embedded server);
- an older one, or one made before migrations existed (tables, no
  ``alembic_version``: the first revision), is upgraded in one transaction;
- one newer than this server knows is refused with a clear message, never
  touched.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, inspect, select

from ...errors import ConfigError
from .tables import metadata

log = logging.getLogger("coflux.server")

MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest revision in ``migrations/versions`` (a test holds the two together).
HEAD = "0003"
#: The revision of the tables as they were before migrations.
FIRST = "0001"

_version = Table("alembic_version", MetaData(), Column("version_num", String(32), primary_key=True))


def current_revision(connection: Connection) -> str | None:
    """The database's revision; ``FIRST`` for tables made before migrations; None if empty."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        return connection.execute(select(_version.c.version_num)).scalar()
    return FIRST if "environments" in tables else None


def migrate(engine: Engine) -> str | None:
    """Bring the database of ``engine`` to ``HEAD``; return the revision it was
    upgraded from (None when it was new or already there)."""
    with engine.begin() as connection:
        revision = current_revision(connection)
        if revision == HEAD:
            return None
        if revision is None:
            metadata.create_all(connection)
            _version.create(connection)
            connection.execute(_version.insert().values(version_num=HEAD))
            return None
        _upgrade(connection, revision)
        return revision


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    known = {r.revision for r in ScriptDirectory.from_config(config).walk_revisions()}
    if revision not in known:
        raise ConfigError(
            f"the database is at schema version {revision}, newer than this Coflux "
            f"(which knows up to {HEAD}); upgrade Coflux to use it"
        )
    if "alembic_version" not in inspect(connection).get_table_names():
        command.stamp(config, FIRST)
    log.info("migrating the database from schema version %s to %s", revision, HEAD)
    command.upgrade(config, "head")
