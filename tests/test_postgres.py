"""The shared server on PostgreSQL: a project per schema, and several server
processes on one database, one orchestrating each project (issue 10).

Skipped, saying why, when there is no PostgreSQL (see tests/postgres.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from conftest import ServerProcess, Workspace, new_workspace, private_stack, wait_until
from reliability.faults import FAN_OUT_GATED, assert_healthy, journal_events

from coflux.remote.server.lease import LOCK_SPACE

FLOWS = """
    import coflux as cf

    @cf.task(cache=True)
    def double(x: int) -> int:
        cf.log_info("doubling {x}", x=x)
        return 2 * x

    @cf.workflow()
    def total(n: int) -> int:
        return sum(double.submit(i).result() for i in range(n))
"""


def test_a_project_on_postgresql_runs_caches_and_logs_like_on_sqlite(
    tmp_path: Path, postgres: Any
) -> None:
    url = postgres.new_database()
    with private_stack(tmp_path, database_url=url) as (server, ws):
        ws.write("flows.py", FLOWS)
        ws.start_agent("flows.py")
        first = ws.cli_json("submit", "flows.py", "total", "5", "--wait")
        second = ws.cli_json("submit", "flows.py", "total", "5", "--wait")
        logs = ws.cli_json("logs", first["id"])
        listed = ws.cli_json("runs", "list")
        health = httpx.get(f"{server.url}/api/health").json()
        other = new_workspace(server, tmp_path / "other")
        assert other.cli_json("runs", "list") == []  # projects are isolated
        assert_healthy(server)
    assert (first["result"], second["result"]) == (20, 20)
    assert [e["state"] for s in second["steps"][1:] for e in s["executions"]] == ["cached"] * 5
    assert sorted(m["message"] for m in logs) == [f"doubling {i}" for i in range(5)]
    assert {r["id"] for r in listed} == {first["id"], second["id"]}
    assert health["database"] == "postgresql"
    with postgres.connect(url) as db:
        schemas = {
            row[0]
            for row in db.execute(
                "SELECT schema_name FROM information_schema.schemata"
                " WHERE starts_with(schema_name, 'project_')"
            )
        }
    assert schemas == {f"project_{ws.project}", f"project_{other.project}"}


def test_two_servers_on_one_database_fail_over_mid_run(tmp_path: Path, postgres: Any) -> None:
    """Server A orchestrates the project; the agents and the CLI talk to B, which
    forwards to A. A is killed mid-run, with tasks running and queued: B takes
    the lease over within the agent timeout, the agents reconnect to it, and the
    run completes with every task started once."""
    url = postgres.new_database()
    a = ServerProcess(tmp_path / "a", database_url=url, agent_timeout=5).start()
    b = ServerProcess(tmp_path / "b", database_url=url, agent_timeout=5).start()
    ws = new_workspace(a, tmp_path / "ws")  # made through A: A holds the lease
    ws.server = b.url
    journal_path = tmp_path / "journal.jsonl"
    gate = tmp_path / "gate"

    def events() -> list[dict[str, Any]]:
        return journal_events(journal_path)

    try:
        ws.write("flows.py", FAN_OUT_GATED)
        ws.env["COFLUX_JOURNAL"] = str(journal_path)
        ws.start_agent("flows.py", concurrency=4)
        ws.start_agent("flows.py", concurrency=4)
        submitted = ws.cli_json("submit", "flows.py", "fan", "30", str(gate))
        wait_until(lambda: sum(e["event"] == "start" for e in events()) == 18)
        assert "holding the lease of project" in a.log_path.read_text()
        # A page's form posted to B (its Origin is B) is B's to check, not A's.
        created = httpx.post(
            f"{b.url}/api/projects/{ws.project}/environments",
            json={"name": "via-b", "base": "production"},
            headers={"Origin": b.url},
        )
        assert created.status_code == 201, created.text

        a.kill()
        killed = time.monotonic()
        wait_until(lambda: "holding the lease of project" in b.log_path.read_text(), timeout=10)
        taken_over = time.monotonic() - killed
        gate.touch()
        with ws.client() as client:
            final = client.wait_for_run(submitted["id"], timeout=60)
            run = client.get_run(submitted["id"])
    finally:
        ws.stop_agents()
        a.stop()
        b.stop()
    assert final["state"] == "succeeded"
    assert run["steps"][0]["executions"][-1]["value"]["data"] == sum(i * i for i in range(30))
    starts = Counter(e["arg"] for e in events() if e["event"] == "start")
    assert starts == Counter(range(30))
    assert [len(s["executions"]) for s in run["steps"]] == [1] * 31
    assert taken_over < 5  # the agent timeout
    assert_healthy(b)


def test_a_server_on_a_database_it_cannot_reach_says_so_in_one_line(tmp_path: Path) -> None:
    from conftest import free_port

    ws = Workspace(tmp_path, "http://127.0.0.1:1", "none")
    done = ws.cli(
        "server",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        f"postgresql://nobody@127.0.0.1:{free_port()}/nothing",
    )
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith(
        "error: can't reach PostgreSQL at postgresql+psycopg://nobody@127.0.0.1:"
    )
    assert "\n" not in line and "Traceback" not in done.stderr


NUL_OUTPUT = """
    import coflux as cf

    @cf.workflow()
    def nul() -> str:
        print("before\\x00after")
        cf.log_info("a\\x00b {value}", value="c\\x00d")
        return "e\\x00f"
"""


def test_nul_in_output_is_kept_as_a_replacement_character(
    tmp_path: Path, database_url: str | None
) -> None:
    """PostgreSQL's text can't hold NUL: output with one is stored with U+FFFD
    (on SQLite too, for one behaviour), never dropped; values keep it (JSON)."""
    with private_stack(tmp_path, database_url=database_url) as (server, ws):
        ws.write("flows.py", NUL_OUTPUT)
        ws.start_agent("flows.py")
        done = ws.cli_json("submit", "flows.py", "nul", "--wait")
        messages = [m["message"] for m in ws.cli_json("logs", done["id"])]
        assert_healthy(server)
    assert done["result"] == "e\x00f"
    assert messages == ["before\ufffdafter", "a\ufffdb c\x00d"]


def test_s68_a_server_that_lost_its_lease_commits_nothing_more(
    tmp_path: Path, postgres: Any
) -> None:
    """S68: A's lease connection is cut while A holds a submission's commit (its
    event loop held at ``submit.before_commit``, so it can't notice first). The
    database refuses the transaction, whose lease check travels in the same
    pipeline as its rows and COMMIT: the submit is answered 503 ``lease_lost``
    and no row of it is stored. B then takes the lease and the project goes on."""
    url = postgres.new_database()
    a = ServerProcess(tmp_path / "a", database_url=url)
    a.env["COFLUX_FAILPOINTS"] = "submit.before_commit=sleep:3"
    a.start()
    b = ServerProcess(tmp_path / "b", database_url=url).start()
    ws = new_workspace(a, tmp_path / "ws")  # made through A: A holds the lease
    body = {"environment": "production", "repository": "flows", "target": "total"}
    body["arguments"] = [{"format": "json", "size": 1, "data": 1}]
    try:
        ws.write("flows.py", FLOWS)
        ws.start_agent("flows.py")
        ws.stop_agents()  # registered: runs can be submitted, none will start
        answers: list[httpx.Response] = []
        submitting = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{a.url}/api/projects/{ws.project}/runs", json=body, timeout=30)
            )
        )
        submitting.start()
        wait_until(lambda: answers or "failpoint submit.before_commit" in a.log_path.read_text())
        assert not answers, answers[0].text
        with postgres.connect(url) as db:  # this database's lease only: the cluster is shared
            cut = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid::bigint = %s AND granted AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())",
                (LOCK_SPACE,),
            ).fetchall()
        submitting.join()
        with postgres.connect(url) as db:
            stored = db.execute(f'SELECT count(*) FROM "project_{ws.project}".runs').fetchone()
        through_b = httpx.post(f"{b.url}/api/projects/{ws.project}/runs", json=body, timeout=30)
        with postgres.connect(url) as db:
            runs = db.execute(f'SELECT id FROM "project_{ws.project}".runs').fetchall()
    finally:
        ws.stop_agents()
        a.stop()
        b.stop()
    assert cut == [(True,)]
    assert answers[0].status_code == 503, answers[0].text
    assert answers[0].json()["code"] == "lease_lost"
    assert stored == (0,)
    assert through_b.status_code == 201, through_b.text
    assert runs == [(through_b.json()["id"],)]
