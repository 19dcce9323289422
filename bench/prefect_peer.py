"""Prefect 3 as a peer: the workloads of bench/core.py, run by Prefect against its own server.

    bench/.venv-prefect/bin/python bench/prefect_peer.py [--n 1000]

Run by the interpreter of the bench's Prefect environment (see BENCHMARKS.md),
never the project's: it imports nothing from Coflux. It starts `prefect server
start` on a free loopback port, with PREFECT_HOME in a temporary directory
(nothing is written to ~/.prefect) and analytics and the UI off, then times,
from calling each flow to its return, with a trivial task `inc(x) = x + 1`:
- chain: a flow calling the task N times in sequence (ms per task);
- fan-out: a flow submitting N tasks to a ThreadPoolTaskRunner(max_workers=16),
  then summing their results (tasks per second);
- cached re-run: the same fan-out of a task cached by its inputs, run a second
  time (every task a cache hit; seconds).
Prints one JSON document on stdout. The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

NOTE = (
    "Prefect runs tasks in threads of the flow's own process (ThreadPoolTaskRunner, "
    "16 workers, for fan-out); Coflux runs each task in a separate execution process "
    "managed by an agent. Each Prefect task run is still recorded through Prefect's "
    "API server (local, SQLite, default services; analytics and UI off)."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: str, port: int) -> subprocess.Popen:
    """`prefect server start` in its own session; returns once /api/health answers."""
    log = os.path.join(home, "server.log")
    with open(log, "w") as stderr:  # the child keeps its own descriptor
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"]
            + ["--host", "127.0.0.1", "--port", str(port), "--no-ui", "--analytics-off"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            with open(log) as f:
                raise RuntimeError("prefect server exited:\n" + f.read()[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError("timed out waiting for the Prefect server")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def count_task_runs() -> int:
    request = urllib.request.Request(
        os.environ["PREFECT_API_URL"] + "/task_runs/count",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def measure(n: int) -> dict:
    # Imported only now: Prefect reads its settings (PREFECT_HOME, PREFECT_API_URL) at import.
    import prefect
    from prefect import flow, task
    from prefect.cache_policies import INPUTS
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.task_runners import ThreadPoolTaskRunner

    @task
    def inc(x: int) -> int:
        return x + 1

    @task(cache_policy=INPUTS)
    def cached_inc(x: int) -> int:
        return x + 1

    @flow
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=16))
    def fanout(n: int) -> int:
        futures = [inc.submit(i) for i in range(n)]
        return sum(f.result() for f in futures)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=16))
    def cached(n: int) -> int:
        futures = [cached_inc.submit(i) for i in range(n)]
        return sum(f.result() for f in futures)

    recorded = 0  # task runs the server should have recorded so far

    def timed(workflow, n: int) -> tuple[float, float, int]:
        """Seconds to the flow's return, seconds until the server has recorded its task runs.

        The server records task runs from the events the flow sends, after the
        flow has returned; waiting for that also starts the next workload on an
        idle server (a busy one answers 503, and the client backs off for up to 30 s).
        """
        nonlocal recorded
        started = time.perf_counter()
        result = workflow(n)
        returned = time.perf_counter() - started
        APILogWorker.drain_all(timeout=60)
        EventsWorker.drain_all(timeout=60)
        recorded += n
        deadline = time.monotonic() + 600
        while count_task_runs() < recorded:
            if time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not record the task runs")
            time.sleep(0.05)
        return returned, time.perf_counter() - started, result

    timed(chain, 10)  # warm-up: the first flow run imports and registers things
    # A flow run's fixed cost; up to 1 s of it is the engine joining, at the flow's
    # end, its heartbeat thread, which sleeps in 1 s steps (heartbeats every 180 s).
    empty_s = statistics.median(timed(chain, 0)[0] for _ in range(3))
    chain_s, chain_recorded_s, chain_result = timed(chain, n)
    fanout_s, fanout_recorded_s, fanout_result = timed(fanout, n)
    timed(cached, n)  # fills the cache
    cached_s, cached_recorded_s, cached_result = timed(cached, n)
    assert chain_result == n, chain_result
    assert fanout_result == cached_result == n * (n + 1) // 2, (fanout_result, cached_result)
    return {
        "prefect": prefect.__version__,
        "n": n,
        "chain_ms_per_task": round(chain_s * 1000 / n, 3),
        "fanout_tasks_per_second": round(n / fanout_s, 1),
        "cached_rerun_s": round(cached_s, 3),
        "empty_flow_s": round(empty_s, 3),
        # The same, timed until the server has recorded every task run, as Coflux's are.
        "until_recorded": {
            "chain_ms_per_task": round(chain_recorded_s * 1000 / n, 3),
            "fanout_tasks_per_second": round(n / fanout_recorded_s, 1),
            "cached_rerun_s": round(cached_recorded_s, 3),
        },
        "note": NOTE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prefect-peer-") as home:
        port = free_port()
        os.environ.update(
            PREFECT_HOME=home,
            PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
        )
        started = time.perf_counter()
        server = start_server(home, port)
        server_start_s = round(time.perf_counter() - started, 1)
        try:
            report = measure(args.n)
        finally:
            stop_server(server)
    report["server_start_s"] = server_start_s
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
