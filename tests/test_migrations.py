"""The schema of projects' databases is versioned (Alembic) and upgraded on start.

Each test runs on SQLite and on PostgreSQL (skipped, saying why, when there is
no PostgreSQL): a database made by the first schema version, with a run in it,
is upgraded by ``coflux server`` and serves that run; one made before
migrations existed is recognised as the first version; one newer than the
server is refused with one clear line, untouched.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess
from sqlalchemy import Engine, create_engine, inspect, text

from coflux.remote.server.schema import FIRST, HEAD, MIGRATIONS

PROJECT = "legacy"
RUN = "7K2QF9XH3M"


@pytest.fixture
def backend(database_url: str | None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Where a project's database lives, and an engine on it as the server sees it."""
    from coflux.remote.server.db import open_database

    url = database_url
    database = open_database(url, tmp_path / "data" / "projects", "FULL")
    if url:
        engine = database.engine_for(f"project_{PROJECT}")
    else:
        (tmp_path / "data" / "projects").mkdir(parents=True)
        engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'projects' / PROJECT}.sqlite")
    yield {"url": url, "engine": engine, "data_dir": tmp_path / "data"}
    engine.dispose()
    database.close()


def _alembic(engine: Engine, revision: str) -> None:
    """Bring the database to ``revision`` the way a release at that version did."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _first_version_with_a_run(engine: Engine) -> None:
    _alembic(engine, FIRST)
    with engine.begin() as c:
        c.execute(text("INSERT INTO environments VALUES (1, 'production', NULL, 1700000000, NULL)"))
        c.execute(text(f"INSERT INTO runs VALUES ('{RUN}', 1, NULL, 1700000000)"))
        c.execute(
            text(
                "INSERT INTO steps (id, run_id, number, repository, target, type, arguments,"
                " options, created_at) VALUES (1, :run, 1, 'flows', 'main', 'workflow',"
                " '[]', '{}', 1700000000)"
            ),
            {"run": RUN},
        )
        c.execute(
            text(
                "INSERT INTO executions (id, step_id, attempt, environment_id, created_at,"
                " assigned_at, started_at, incremental) VALUES (1, 1, 1, 1, 1700000000,"
                " 1700000001, 1700000002, false)"
            )
        )
        c.execute(
            text(
                "INSERT INTO results (execution_id, state, value, created_at) VALUES"
                " (1, 'succeeded', :value, 1700000003)"
            ),
            {"value": '{"format": "json", "data": 42}'},
        )
        c.execute(
            text("INSERT INTO log_messages VALUES (1, 1, 1, 1700000002.5, 'info', 'hello', '{}')")
        )


def _revision(engine: Engine) -> str:
    with engine.connect() as c:
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _server(backend: dict[str, Any]) -> ServerProcess:
    return ServerProcess(backend["data_dir"], database_url=backend["url"] or "")


def test_a_first_version_database_is_upgraded_and_serves_its_runs(
    backend: dict[str, Any],
) -> None:
    engine = backend["engine"]
    _first_version_with_a_run(engine)
    server = _server(backend).start()
    try:
        run = httpx.get(f"{server.url}/api/projects/{PROJECT}/runs/{RUN}").json()
        logs = httpx.get(f"{server.url}/api/projects/{PROJECT}/runs/{RUN}/logs").json()
    finally:
        server.stop()
    assert run["state"] == "succeeded"
    assert run["steps"][0]["executions"][0]["value"] == {"format": "json", "data": 42}
    assert [m["template"] for m in logs] == ["hello"]
    assert _revision(engine) == HEAD
    indexes = {i["name"] for i in inspect(engine).get_indexes("log_messages")}
    assert "ix_log_messages_execution_page" in indexes
    assert "ix_log_messages_execution_id" not in indexes
    log = server.log_path.read_text()
    assert f"migrating the database from schema version {FIRST} to {HEAD}" in log


def test_a_database_made_before_migrations_counts_as_the_first_version(
    backend: dict[str, Any],
) -> None:
    engine = backend["engine"]
    _first_version_with_a_run(engine)
    with engine.begin() as c:
        c.execute(text("DROP TABLE alembic_version"))
    migrate = subprocess.run(
        [
            sys.executable,
            "-m",
            "coflux",
            "server",
            "migrate",
            "--data-dir",
            str(backend["data_dir"]),
        ]
        + (["--database-url", backend["url"]] if backend["url"] else [])
        + ["--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (
        migrate.stdout.strip() == f'{{"schema": "{HEAD}", "migrated": {{"{PROJECT}": "{FIRST}"}}}}'
    )
    assert _revision(engine) == HEAD


def test_a_database_newer_than_the_server_is_refused_untouched(backend: dict[str, Any]) -> None:
    engine = backend["engine"]
    _first_version_with_a_run(engine)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    server = _server(backend)
    refused = subprocess.run(
        [sys.executable, "-m", "coflux", "server", "--port", str(server.port), *server.args]
        + ["--data-dir", str(backend["data_dir"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: the database is at schema version 9999, newer than this Coflux "
        f"(which knows up to {HEAD}); upgrade Coflux to use it"
    )
    assert "Traceback" not in refused.stderr
    assert _revision(engine) == "9999"


def test_migrations_make_exactly_the_tables_the_code_declares(backend: dict[str, Any]) -> None:
    """A new database gets today's tables directly (fast); an old one gets them
    through the migrations: the two must be the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from coflux.remote.server.tables import metadata

    engine = backend["engine"]
    _alembic(engine, "head")
    with engine.connect() as c:
        differences = compare_metadata(MigrationContext.configure(c), metadata)
    assert differences == []
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
