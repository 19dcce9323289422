"""What the fault scenarios share: the tasks' journal of starts and ends, the
programs several scenarios run (and the stacks that run them: two agents, one
behind a proxy), and the health check every scenario ends with (intact
databases, at most one result per execution, no 5xx in the server's log)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import ServerProcess, Workspace, private_stack

#: Task code's journal of starts and ends: a line appended (atomically) per event.
JOURNAL = """
    import json
    import os
    import time

    def journal(event, name, arg):
        line = json.dumps({"event": event, "task": name, "arg": arg, "pid": os.getpid(),
                           "t": time.time()})
        fd = os.open(os.environ["COFLUX_JOURNAL"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)
"""

PUPPETS = (
    JOURNAL
    + """
    import coflux as cf

    @cf.task()
    def quick(x: int) -> int:
        journal("start", "quick", x)
        journal("end", "quick", x)
        return x * 10

    @cf.workflow()
    def main(x: int) -> int:
        return quick(x) + 1
"""
)


def journal(path: Path) -> Counter[tuple[str, str]]:
    if not path.exists():
        return Counter()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return Counter((e["task"], e["event"]) for e in lines)


def database_checks(server: ServerProcess) -> dict[str, Any]:
    """Read-only checks of every project database: integrity, and at most one
    result per execution (I1, which a unique key also holds)."""
    if server.database_url:
        return _postgres_checks(server.database_url)
    found = {}
    for path in sorted((server.data_dir / "projects").glob("*.sqlite")):
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            doubled = db.execute(
                "SELECT count(*) FROM (SELECT execution_id FROM results"
                " GROUP BY execution_id HAVING count(*) > 1)"
            ).fetchone()[0]
            found[path.stem] = {"integrity": integrity, "doubled_results": doubled}
    return found


def _postgres_checks(url: str) -> dict[str, Any]:
    """PostgreSQL checks its pages itself (checksums); what is left is I1."""
    from postgres import Postgres

    found = {}
    with Postgres(url).connect(url) as db:
        schemas = db.execute(
            "SELECT schema_name FROM information_schema.schemata"
            " WHERE starts_with(schema_name, 'project_')"
        ).fetchall()
        for (schema,) in schemas:
            doubled = db.execute(
                f'SELECT count(*) FROM (SELECT execution_id FROM "{schema}".results'
                " GROUP BY execution_id HAVING count(*) > 1) AS d"
            ).fetchone()[0]
            found[schema] = {"integrity": "ok", "doubled_results": doubled}
    return found


def assert_healthy(server: ServerProcess) -> None:
    """Intact databases, and no request that failed inside the server (a 5xx
    is always logged with its traceback)."""
    for project, checks in database_checks(server).items():
        assert checks == {"integrity": "ok", "doubled_results": 0}, project
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


FAN_OUT_GATED = (
    JOURNAL
    + """
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task()
    def square(i: int, gate: str) -> int:
        journal("start", "square", i)
        while i >= 10 and not Path(gate).exists():
            time.sleep(0.02)
        journal("end", "square", i)
        return i * i

    @cf.workflow()
    def fan(n: int, gate: str) -> int:
        calls = [square.submit(i, gate) for i in range(n)]
        return sum(c.result() for c in calls)
"""
)


def journal_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines tasks appended to ``path`` so far."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


NETWORK_TASKS = """
    import json
    import os
    import time
    from pathlib import Path
    import coflux as cf

    def started(journal):
        path = Path(journal) / "journal.jsonl"
        with open(path, "a") as f:
            line = {"event": "start", "pid": os.getpid(), "agent": os.getppid(), "t": time.time()}
            f.write(json.dumps(line) + "\\n")
        return len(path.read_text().splitlines())

    @cf.task(retries=1)
    def held(journal: str) -> str:
        attempt = started(journal)
        if attempt == 1:
            time.sleep(60)  # until the agent's fence kills it
        return f"attempt {attempt}"

    @cf.task()
    def gated(journal: str) -> str:
        attempt = started(journal)
        while not (Path(journal) / "gate").exists():
            time.sleep(0.02)
        return f"released {attempt}"
"""

NETWORK_WORKFLOWS = """
    import coflux as cf
    from tasks import gated, held

    @cf.workflow()
    def run_held(journal: str) -> str:
        return held(journal)

    @cf.workflow()
    def run_gated(journal: str) -> str:
        return gated(journal)
"""


@contextlib.contextmanager
def split_agents(tmp_path: Path, agent_timeout: float, proxied: bool) -> Any:
    """A private server; an agent for the workflows connected directly, and one
    for the tasks (to stop, or to cut off when ``proxied``: its connections go
    through a loopback proxy)."""
    from proxy import Proxy

    journal = tmp_path / "journal"
    journal.mkdir()
    with private_stack(tmp_path, agent_timeout=agent_timeout) as (server, ws):
        proxy = Proxy(server.port) if proxied else None
        tasker = Workspace(tmp_path / "tasker", proxy.url if proxy else server.url, ws.project)
        tasker.root.mkdir()
        try:
            for place in (ws, tasker):
                place.write("tasks.py", NETWORK_TASKS)
                place.write("wf.py", NETWORK_WORKFLOWS)
            ws.start_agent("wf.py")
            tasker.start_agent("tasks.py")
            yield server, ws, tasker, proxy, journal
        finally:
            tasker.stop_agents()
            if proxy is not None:
                proxy.close()


def behind_a_proxy(tmp_path: Path) -> Any:
    """Agent timeout 2 s: a cut of 0.5 s is short, one of 4 s long."""
    return split_agents(tmp_path, agent_timeout=2, proxied=True)


def two_agents(tmp_path: Path) -> Any:
    """Agent timeout 30 s, so nothing in these tests is timeout-driven."""
    return split_agents(tmp_path, agent_timeout=30, proxied=False)


def starts(journal: Path) -> list[dict[str, Any]]:
    path = journal / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
