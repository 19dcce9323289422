"""DBOS 3 as a peer: bench/core.py's chain, fan-out and cached re-run, on SQLite and PostgreSQL.

    bench/.venv-dbos/bin/python bench/dbos_peer.py [--n 1000] [--postgres URL]

Run by the interpreter of the bench's DBOS environment (bench/peers.py makes
it), never the project's: it imports nothing from Coflux. DBOS is a library:
workflows and their steps run in threads of the calling process, and each
step's outcome is checkpointed in the system database before the workflow
goes on. Timed, with a trivial step `inc(x) = x + 1`, each in a fresh process
per database (DBOS is a singleton):
- chain: a workflow calling the step N times in sequence (ms per step);
- fan-out: a workflow starting N child workflows (each one step) and summing
  their results (tasks per second);
- cached re-run: the chain forked after its last step, so every step's
  recorded outcome is replayed and none runs again (seconds).
Prints one JSON document on stdout: `sqlite`, and `postgresql` when `--postgres`
names a database; the top-level figures are the better of the two.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

NOTE = (
    "DBOS runs steps in threads of the workflow's own process and checkpoints each "
    "step's outcome in its system database (SQLite, or PostgreSQL); there is no "
    "separate server or worker process, and no process per task."
)


def measure(n: int, database_url: str) -> dict:
    from dbos import DBOS, DBOSConfig

    @DBOS.step()
    def inc(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    @DBOS.workflow()
    def one(x: int) -> int:
        return inc(x)

    @DBOS.workflow()
    def fanout(n: int) -> int:
        handles = [DBOS.start_workflow(one, i) for i in range(n)]
        return sum(h.get_result() for h in handles)

    config: DBOSConfig = {
        "name": "bench-peer",
        "system_database_url": database_url,
        "log_level": "WARNING",
        "run_admin_server": False,
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        chain(10)  # warm-up
        started = time.perf_counter()
        handle = DBOS.start_workflow(chain, n)
        assert handle.get_result() == n
        chain_s = time.perf_counter() - started
        started = time.perf_counter()
        total = fanout(n)
        fanout_s = time.perf_counter() - started
        assert total == n * (n + 1) // 2, total
        started = time.perf_counter()
        forked = DBOS.fork_workflow(handle.get_workflow_id(), n + 1)
        assert forked.get_result() == n
        cached_s = time.perf_counter() - started
    finally:
        DBOS.destroy()
    return {
        "chain_ms_per_task": round(chain_s * 1000 / n, 3),
        "fanout_tasks_per_second": round(n / fanout_s, 1),
        "cached_rerun_s": round(cached_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--postgres", help="a PostgreSQL database DBOS may use")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a database URL: measure it here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.n, args.one)))
        return
    from importlib.metadata import version

    report: dict = {"dbos": version("dbos"), "n": args.n}
    with tempfile.TemporaryDirectory(prefix="dbos-peer-") as tmp:
        databases = {"sqlite": f"sqlite:///{tmp}/dbos.sqlite"}
        if args.postgres:
            databases["postgresql"] = args.postgres
        for name, url in databases.items():
            done = subprocess.run(
                [sys.executable, __file__, "--n", str(args.n), "--one", url],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode != 0:
                report[name] = "failed: " + " ".join(done.stderr.strip().splitlines()[-3:])
            else:
                report[name] = json.loads(done.stdout.strip().splitlines()[-1])
    measured = [v for k, v in report.items() if k in databases and isinstance(v, dict)]
    if not measured:
        raise SystemExit("no database measured: " + json.dumps(report))
    report["chain_ms_per_task"] = min(m["chain_ms_per_task"] for m in measured)
    report["fanout_tasks_per_second"] = max(m["fanout_tasks_per_second"] for m in measured)
    report["cached_rerun_s"] = min(m["cached_rerun_s"] for m in measured)
    report["note"] = NOTE
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
