"""Local first: the mirror answers offline, the outbox queues, and `coflux sync` applies once.

A private server is stopped and started for real; `coflux sync` is killed for
real (a failpoint ends it right after the server applied an operation).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

from conftest import Workspace, commit_all, git, git_workspace, private_stack, wait_until

FLOWS = """
    import coflux as cf

    @cf.task()
    def double(x: int) -> int:
        return x * 2

    @cf.workflow()
    def twice(x: int) -> int:
        return double(x)
"""

QUEUED = "queued: server unreachable; run `coflux sync`"


def outbox_rows(ws: Workspace) -> list[tuple[str, bool]]:
    with sqlite3.connect(ws.root / ".coflux" / "state.db") as db:
        rows = db.execute("SELECT operation, done_at IS NOT NULL FROM outbox ORDER BY id")
        return [(operation, bool(done)) for operation, done in rows]


def test_s12_offline_queue_mirror_and_exactly_once_sync(tmp_path: Path) -> None:
    with private_stack(tmp_path) as (server, ws):
        ws.write("flows.py", FLOWS)
        ws.start_agent("flows.py")
        first = ws.cli_json("submit", "flows.py", "twice", "1", "--wait")
        shown = ws.cli_json("runs", "show", first["id"])
        listed = ws.cli_json("runs", "list")
        ws.stop_agents()
        server.stop()

        # The mirror answers, saying in one line that it may be stale.
        offline = ws.cli("runs", "show", first["id"], "--json")
        assert offline.returncode == 0, offline.stderr
        assert json.loads(offline.stdout) == shown
        assert offline.stderr.startswith(
            "offline: the server is unreachable; showing the local copy"
        )
        assert offline.stderr.strip().endswith("(may be stale)")
        assert ws.cli_json("runs", "list") == listed

        # Operations queue, written ahead, and say so in one line.
        for x in ("2", "3"):
            queued = ws.cli("submit", "flows.py", "twice", x)
            assert (queued.returncode, queued.stdout.strip()) == (
                0,
                f"{QUEUED}  (submit flows:twice in production)",
            )
        rerun = ws.cli_json("rerun", f"{first['id']}:1")
        assert rerun["queued"] is True and rerun["description"] == (
            f"rerun {first['id']}:1 in production"
        )
        assert ws.cli_json("envs", "create", "staging")["queued"] is True
        refused = ws.cli("submit", "flows.py", "twice", "4", "--no-queue")
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: can't reach the Coflux server")
        status = ws.cli_json("status")
        assert status["server"] == {"url": ws.server, "reachable": False}
        assert status["environment"] == {
            "name": "production",
            "source": "env",
            "branch": None,
            "error": None,
        }
        assert [q["description"] for q in status["queued"]] == [
            "submit flows:twice in production",
            "submit flows:twice in production",
            f"rerun {first['id']}:1 in production",
            "create environment staging",
        ]

        # The server is back. A sync dies right after the server applied the
        # first operation, before marking it done; the next sync repeats it.
        server.start()
        killed = ws.cli("sync", env_extra={"COFLUX_FAILPOINTS": "sync.after_server_ack=exit"})
        assert killed.returncode == 137
        assert outbox_rows(ws) == [
            ("submit", False),
            ("submit", False),
            ("rerun", False),
            ("create_environment", False),
        ]
        synced = ws.cli_json("sync")
        assert [(s["description"], s["error"]) for s in synced] == [
            ("submit flows:twice in production", None),
            ("submit flows:twice in production", None),
            (f"rerun {first['id']}:1 in production", None),
            ("create environment staging", None),
        ]
        assert all(done for _, done in outbox_rows(ws))
        assert ws.cli("sync").stdout.strip() == "Nothing queued."

        # Exactly one run per queued submission, one re-run execution.
        runs = ws.cli_json("runs", "list")
        assert len(runs) == 3
        assert synced[0]["result"]["id"] in {r["id"] for r in runs}
        ws.start_agent("flows.py")
        with ws.client() as client:
            wait_until(lambda: all(client.get_run(r["id"])["state"] == "succeeded" for r in runs))
        results = sorted(ws.cli_json("runs", "show", r["id"])["result"] for r in runs)
        assert results == [2, 4, 6]
        again = ws.cli_json("runs", "show", first["id"])
        assert [e["id"] for e in again["steps"][0]["executions"]] == [
            f"{first['id']}:1:1",
            f"{first['id']}:1:2",
        ]
        assert {e["name"] for e in ws.cli_json("envs", "list")} == {"production", "staging"}
        assert ws.cli_json("status")["queued"] == []


CACHED = """
    import coflux as cf

    @cf.task(cache=True)
    def expensive(x: int) -> int:
        with open({journal!r}, "a") as f:
            f.write("expensive\\n")
        return x * 100

    @cf.task()
    def plus(a: int, b: int) -> int:
        return a + b

    @cf.task()
    def keep(total: int) -> cf.Asset:
        with open("total.txt", "w") as f:
            f.write(str(total))
        return cf.persist_asset("total.txt")

    @cf.workflow()
    def report(x: int) -> int:
        total = plus(expensive(x), 1)
        keep(total)
        return total
"""


def test_offline_dev_reuses_production_cache_and_is_pushed_later(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    with private_stack(tmp_path) as (server, ws0):
        ws = git_workspace(server, tmp_path / "repo")
        try:
            ws.write("flows.py", CACHED.format(journal=str(journal)))
            (ws.root / ".coflux.toml").write_text('modules = ["flows.py"]\n')
            commit_all(ws.root, "flows")
            ws.start_agent("flows.py")
            production = ws.cli_json("submit", "flows.py", "report", "7", "--wait")
            assert production["result"] == 701
            ws.stop_agents()
            pulled = ws.cli_json("sync", "--pull", "production", "--blobs")
            assert pulled == {
                "environment": "production",
                "runs": 1,
                "skipped_running": 0,
                "blobs": 0,
            }
            server.stop()

            git(ws.root, "switch", "-q", "-c", "feature/offline")
            log = tmp_path / "dev.log"
            dev = ws.start_dev(log)
            try:
                wait_until(lambda: "serving flows" in log.read_text(), timeout=30)
                text = log.read_text()
                assert "is unreachable: working offline on the embedded server" in text
                assert "seeded the embedded server with 1 pulled run(s)" in text
                offline = ws.cli_json("submit", "flows.py", "report", "7", "--wait")
            finally:
                os.killpg(dev.pid, signal.SIGINT)
                assert dev.wait(20) == 0, log.read_text()
            assert offline["result"] == 701
            assert journal.read_text().split() == ["expensive"]  # production's cache entry
            steps = {s["target"]: s for s in offline["steps"]}
            assert steps["flows:expensive"]["reused_from"] == f"{production['id']}:2:1"

            server.start()
            pushed = ws.cli_json("sync")
            assert [(p["description"], p["error"]) for p in pushed] == [
                (f"push run {offline['id']}", None)
            ]
            shared = ws.cli_json("runs", "show", offline["id"], "--env", "feature/offline")
            assert shared["id"] == offline["id"] and shared["result"] == 701
            assert shared["environment"] == "feature/offline"
            assert [s["id"] for s in shared["steps"]] == [s["id"] for s in offline["steps"]]
            assert shared["steps"][1]["reused_from"] == f"{production['id']}:2:1"
            assert ws.cli("sync").stdout.strip() == "Nothing queued."
            assert len(ws.cli_json("runs", "list", "--env", "feature/offline")) == 1
            # The asset made offline travelled too: recorded, and its blobs on the server.
            [asset] = ws.cli_json("assets", "list", offline["id"])
            assert (asset["path"], asset["files"], asset["size"]) == ("total.txt", 1, 3)
            elsewhere = Workspace(tmp_path / "elsewhere", ws.server, ws.project)
            elsewhere.root.mkdir()
            elsewhere.cli_json("assets", "restore", asset["ref"], "--to", "out")
            assert (elsewhere.root / "out" / "total.txt").read_text() == "701"
            assert ws.cli_json("status")["branches"] == [
                {"branch": "feature/offline", "environment": "feature/offline"},
                {"branch": "main", "environment": "production"},
            ]
        finally:
            ws.stop_agents()
