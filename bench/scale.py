"""Scale on SQLite and PostgreSQL: a wide fan-out over several agents, and a
project holding a million executions.

    python -m bench.scale --postgres postgresql://postgres@127.0.0.1:5432/postgres
        [--fanout 100,1000,10000,100000] [--agents 4] [--executions 1000000]

``--postgres`` names a server where the bench may create databases (it makes a
fresh one per measurement); without it only SQLite is measured. Prints JSON.

- fan-out: one workflow submits N trivial tasks and gathers them, through a
  real server and ``--agents`` agent processes (concurrency 4 each), for each
  N of ``--fanout``, each on a fresh server and database; with the CPU time
  per task of the server and of the agents (with their execution processes)
  from ``/proc``, so a cost that grows with N shows even on a loaded machine;
- stored: ``--executions`` finished executions (runs of 10 steps) written
  straight into the project's tables in the database (making them through
  the orchestrator would take a quarter of an hour), then the server started
  on them: its start, ``runs list`` and ``runs show`` (API and CLI), and the
  database's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from .core import Stack, free_port, wait_until

STEPS_PER_RUN = 10


def new_database(admin_url: str) -> str:
    name = f"coflux_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(_psycopg(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _psycopg(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process and its children, from ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_s(int(child)) for child in children)


def fanout(root: Path, n: int, agents: int, database_url: str | None) -> dict[str, Any]:
    args = ("--database-url", database_url) if database_url else ()
    root.mkdir(parents=True)
    stack = Stack(root, 4, args, agents=agents)
    try:
        stack.run("fanout", 100)  # warm: workers started, code imported
        server, workers = _cpu_s(stack.server.pid), sum(_cpu_s(a.pid) for a in stack.agents)
        seconds, result = stack.run("fanout", n)
        server = _cpu_s(stack.server.pid) - server
        workers = sum(_cpu_s(a.pid) for a in stack.agents) - workers
    finally:
        stack.close()
    assert result == sum(range(1, n + 1)), result
    return {
        "tasks": n,
        "agents": agents,
        "seconds": round(seconds, 2),
        "tasks_per_s": round(n / seconds),
        # The final read of the run (a GET of N steps) is included, as in `seconds`.
        "server_cpu_ms_per_task": round(server * 1000 / n, 3),
        "agents_cpu_ms_per_task": round(workers * 1000 / n, 3),
    }


def _fill(engine: Any, runs: int) -> None:
    """``runs`` runs of ``STEPS_PER_RUN`` finished steps, generated inside the database."""
    postgres = engine.dialect.name == "postgresql"
    run_id = "lpad(i::text, 10, '0')" if postgres else "printf('%010d', i)"
    empty_list, empty_dict = ("'[]'::json", "'{}'::json") if postgres else ("'[]'", "'{}'")
    value = (
        """('{"format": "json", "data": ' || s || '}')::json"""
        if postgres
        else """'{"format": "json", "data": ' || s || '}'"""
    )
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :runs)"
    steps = f"{numbers}, k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < {STEPS_PER_RUN})"
    statements = [
        f"INSERT INTO runs (id, environment_id, created_at) "
        f"{numbers} SELECT {run_id}, 1, 1700000000 + i FROM n",
        f"INSERT INTO steps (id, run_id, number, parent_execution_id, call_index, repository,"
        f" target, type, arguments, options, created_at) {steps}"
        f" SELECT (i - 1) * {STEPS_PER_RUN} + j, {run_id}, j,"
        f" CASE WHEN j = 1 THEN NULL ELSE (i - 1) * {STEPS_PER_RUN} + 1 END,"
        f" CASE WHEN j = 1 THEN NULL ELSE j - 2 END, 'flows',"
        f" CASE WHEN j = 1 THEN 'fanout' ELSE 'inc' END,"
        f" CASE WHEN j = 1 THEN 'workflow' ELSE 'task' END,"
        f" {empty_list}, {empty_dict}, 1700000000 + i FROM n, k",
        f"INSERT INTO executions (id, step_id, attempt, environment_id, created_at, assigned_at,"
        f" started_at, incremental) SELECT id, id, 1, 1, created_at, created_at, created_at,"
        f" {'false' if postgres else '0'} FROM steps",
        f"INSERT INTO results (execution_id, state, value, created_at)"
        f" SELECT id, 'succeeded', {value}, created_at FROM (SELECT id AS s, id, created_at"
        f" FROM executions) AS e",
    ]
    with engine.begin() as c:
        for statement in statements:
            c.execute(text(statement), {"runs": runs})
    if postgres:
        # What autovacuum would do within a minute of such a load: without
        # statistics the planner guesses, and a list took 70 ms instead of 7.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("ANALYZE"))


def stored(root: Path, executions: int, database_url: str | None) -> dict[str, Any]:
    from coflux.remote.server.db import open_database

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_args = ["--port", str(port), "--data-dir", str(root / "data")]
    if database_url:
        server_args += ["--database-url", database_url]
    runs = executions // STEPS_PER_RUN
    database = open_database(database_url, root / "data" / "projects", "NORMAL")
    engine = database.open("bench")
    with engine.begin() as c:
        c.execute(text("INSERT INTO environments VALUES (1, 'production', NULL, 1700000000, NULL)"))
    started = time.perf_counter()
    _fill(engine, runs)
    filled = time.perf_counter() - started
    if database_url:
        size_query = (
            "SELECT sum(pg_total_relation_size(quote_ident(schemaname) || '.' ||"
            " quote_ident(tablename))) FROM pg_tables WHERE schemaname = 'project_bench'"
        )
        with engine.connect() as c:
            size = int(c.execute(text(size_query)).scalar() or 0)
    else:
        size = sum(p.stat().st_size for p in (root / "data" / "projects").iterdir())
    engine.dispose()
    database.close()

    server = subprocess.Popen(
        [sys.executable, "-m", "coflux", "server", *server_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.perf_counter()
        wait_until(lambda: httpx.get(f"{url}/api/health").status_code == 200, timeout=120)
        with httpx.Client(base_url=url, timeout=120) as client:
            client.get("/api/projects/bench/runs", params={"environment": "production"})
            opened = time.perf_counter() - started
            timings = {}
            for name, path, params in [
                ("api_runs_list_s", "/api/projects/bench/runs", {"environment": "production"}),
                ("api_runs_show_s", f"/api/projects/bench/runs/{runs:010d}", {}),
            ]:
                began = time.perf_counter()
                response = client.get(path, params=params)
                timings[name] = round(time.perf_counter() - began, 4)
                assert response.status_code == 200, response.text
            listed = client.get("/api/projects/bench/runs", params={"environment": "production"})
        env = {
            **os.environ,
            "COFLUX_SERVER": url,
            "COFLUX_PROJECT": "bench",
            "COFLUX_ENV": "production",
        }
        for name, args in [
            ("cli_runs_list_s", ["runs", "list", "--json"]),
            ("cli_runs_show_s", ["runs", "show", f"{runs:010d}", "--json"]),
        ]:
            began = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "coflux", *args], env=env, capture_output=True, cwd=root
            )
            timings[name] = round(time.perf_counter() - began, 3)
            assert done.returncode == 0, done.stderr
    finally:
        server.terminate()
        server.wait(30)
    return {
        "executions": runs * STEPS_PER_RUN,
        "runs": runs,
        "fill_s": round(filled, 1),
        "database_mb": round(size / 1e6, 1),
        "server_first_answer_s": round(opened, 3),
        "listed": len(listed.json()),
        **timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL server to make databases in")
    parser.add_argument(
        "--fanout", default="100,1000,10000,100000", help="the sizes N, comma-separated"
    )
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--postgres-only", action="store_true", help="skip SQLite")
    parser.add_argument("--only", choices=["fanout", "stored"], help="one of the two measurements")
    args = parser.parse_args()
    backends: dict[str, str | None] = {} if args.postgres_only else {"sqlite": None}
    if args.postgres:
        backends["postgresql"] = args.postgres
    parts = [args.only] if args.only else ["fanout", "stored"]
    sizes = [int(size) for size in args.fanout.split(",")]
    report: dict[str, Any] = {part: {} for part in parts}
    for name, admin in backends.items():
        for part in parts:
            if part == "fanout":
                report[part][name] = {}
                for n in sizes:
                    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
                        url = new_database(admin) if admin else None
                        result = fanout(Path(tmp) / "f", n, args.agents, url)
                    report[part][name][n] = result
                    print(json.dumps({name: result}), file=sys.stderr)
                continue
            with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
                url = new_database(admin) if admin else None
                report[part][name] = stored(Path(tmp), args.executions, url)
            print(json.dumps({name: report[part][name]}), file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
