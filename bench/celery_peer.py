"""Celery 5 as a peer: the chain and fan-out of bench/core.py, on a Redis broker and backend.

    bench/.venv-celery/bin/python bench/celery_peer.py [--n 1000]

Run by the interpreter of the bench's Celery environment (bench/peers.py makes
it), never the project's: it imports nothing from Coflux. It starts
`redis-server` on a free loopback port with its data in a temporary directory
(Debian's `redis-server` package; nothing is downloaded), then, for each worker
pool (prefork with 2 processes, the machine's cores; threads with 16, the
concurrency Coflux's fan-out uses), starts `celery worker` and times, with a
trivial task `inc(x) = x + 1`:
- chain: the caller waits for each task's result before sending the next
  (ms per task), as a Coflux workflow calling a task in a loop does;
- fan-out: a group of N tasks, then the sum of their results (tasks per second).
Celery has no result cache, so there is no cached re-run to compare.
Prints one JSON document on stdout; Redis and the workers are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = """
import os
from celery import Celery

app = Celery("peer", broker=os.environ["PEER_REDIS"], backend=os.environ["PEER_REDIS"])
app.conf.update(
    result_expires=3600, worker_prefetch_multiplier=4, broker_connection_retry_on_startup=True
)

@app.task
def inc(x):
    return x + 1
"""

NOTE = (
    "Celery workers take tasks from a Redis list and write results to Redis (no fsync: "
    "Redis runs with its defaults, persistence off in its temporary directory); a result "
    "is not durable when it is told to its caller. Coflux commits each result with an "
    "fsync before its caller sees it."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(home: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (Debian: apt-get install redis-server)")
    port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home)]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return redis, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    stop(redis)
    raise RuntimeError("redis-server did not answer")


def start_worker(home: Path, pool: str, concurrency: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "peer_tasks", "worker", "--pool", pool]
        + ["--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip"]
        + ["--without-mingle", "--without-heartbeat"],
        cwd=home,
        env=os.environ | {"PYTHONPATH": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=open(home / f"worker-{pool}.log", "w"),  # noqa: SIM115 (the child keeps it)
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure(n: int, inc) -> dict:
    from celery import group

    inc.delay(0).get(timeout=120)  # the worker is up
    for i in range(20):  # warm-up
        inc.delay(i).get(timeout=60)
    started = time.perf_counter()
    x = 0
    for _ in range(n):
        x = inc.delay(x).get(timeout=60)
    chain_s = time.perf_counter() - started
    assert x == n, x
    started = time.perf_counter()
    total = sum(group(inc.s(i) for i in range(n))().get(timeout=600))
    fanout_s = time.perf_counter() - started
    assert total == n * (n + 1) // 2, total
    return {
        "chain_ms_per_task": round(chain_s * 1000 / n, 3),
        "fanout_tasks_per_second": round(n / fanout_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    import celery

    with tempfile.TemporaryDirectory(prefix="celery-peer-") as tmp:
        home = Path(tmp)
        (home / "peer_tasks.py").write_text(TASKS)
        redis, url = start_redis(home)
        os.environ["PEER_REDIS"] = url
        sys.path.insert(0, str(home))
        try:
            from peer_tasks import inc

            pools = {}
            for pool, concurrency in (("prefork", 2), ("threads", 16)):
                worker = start_worker(home, pool, concurrency)
                try:
                    pools[f"{pool}-{concurrency}"] = measure(args.n, inc)
                finally:
                    stop(worker)
        finally:
            stop(redis)
    best = {
        "chain_ms_per_task": min(p["chain_ms_per_task"] for p in pools.values()),
        "fanout_tasks_per_second": max(p["fanout_tasks_per_second"] for p in pools.values()),
    }
    report = {"celery": celery.__version__, "n": args.n, "pools": pools, **best}
    report["cached_rerun_s"] = None  # no result cache
    report["note"] = NOTE
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
