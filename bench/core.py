"""Chain and fan-out through a real server and agent, against baselines measured in the same run.

    python -m bench.core [--n 1000] [--concurrency 16]

Prints one JSON document. Workloads:
- chain: a workflow calling a trivial task N times in sequence (ms per task);
- fanout: a workflow submitting N trivial tasks, then gathering them (tasks per second);
- cached_rerun: the same fan-out of a cache=True task run a second time (every step a hit);
- fib20: fib(20) with cache=True (each n executed once, the other calls cached).
Baselines: a plain function call, and a ProcessPoolExecutor round trip per task
(the floor for running each task in another process).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx

WORKFLOWS = """
import coflux as cf

@cf.task()
def inc(x: int) -> int:
    return x + 1

@cf.workflow()
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x

@cf.workflow()
def fanout(n: int) -> int:
    executions = [inc.submit(i) for i in range(n)]
    return sum(e.result() for e in executions)

@cf.task(cache=True)
def cached_inc(x: int) -> int:
    return x + 1

@cf.workflow()
def cached(n: int) -> int:
    executions = [cached_inc.submit(i) for i in range(n)]
    return sum(e.result() for e in executions)

@cf.task(cache=True)
def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)

@cf.workflow()
def run_fib(n: int) -> int:
    return fib(n)
"""


def _inc(x: int) -> int:
    return x + 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def baseline_function(n: int) -> float:
    started = time.perf_counter()
    x = 0
    for _ in range(n):
        x = _inc(x)
    return (time.perf_counter() - started) * 1000 / n


def baseline_process_pool(n: int) -> float:
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        pool.submit(_inc, 0).result()  # start the worker first
        started = time.perf_counter()
        x = 0
        for _ in range(n):
            x = pool.submit(_inc, x).result()
        return (time.perf_counter() - started) * 1000 / n


def baseline_process_pool_fanout(n: int) -> float:
    """Tasks per second through a ProcessPoolExecutor of 2 (the cores here): the fan-out floor."""
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        list(pool.map(_inc, range(4)))  # start the workers first
        started = time.perf_counter()
        futures = [pool.submit(_inc, i) for i in range(n)]
        total = sum(f.result() for f in futures)
        seconds = time.perf_counter() - started
    assert total == n * (n + 1) // 2
    return n / seconds


def baseline_fsync(n: int = 200) -> float:
    """Median ms of appending 100 bytes to a file and fsyncing it: one durable commit's floor."""
    times = []
    with tempfile.NamedTemporaryFile(prefix="bench-fsync-") as f:  # where the stacks keep data
        for _ in range(n):
            started = time.perf_counter()
            f.write(b"x" * 100)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def wait_until(predicate: Callable[[], bool], timeout: float = 30, every: float = 0.05) -> None:
    """Poll `predicate` until it is true; connection errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(every)
    raise RuntimeError("timed out waiting for the benchmark stack")


class Stack:
    """A server and an agent in subprocesses, in a temporary folder."""

    def __init__(
        self,
        root: Path,
        concurrency: int,
        server_args: tuple[str, ...] = (),
        agents: int = 1,
        workflows: str = WORKFLOWS,
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "flows.py").write_text(textwrap.dedent(workflows))
        self.env = {
            **os.environ,
            "COFLUX_SERVER": self.url,
            "COFLUX_PROJECT": "bench",
            "COFLUX_ENV": "production",
        }
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coflux",
                "server",
                "--port",
                str(self.port),
                "--data-dir",
                str(root / "data"),
                *server_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: httpx.get(f"{self.url}/api/health").status_code == 200)
        httpx.post(f"{self.url}/api/projects", json={"name": "bench"}).raise_for_status()
        self.agents = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "coflux",
                    "agent",
                    "flows.py",
                    "--concurrency",
                    str(concurrency),
                    # A bench may run in a folder inside a git work tree (bench.scale
                    # keeps its data on the disk under the current directory), which
                    # is then dirty: production would refuse it.
                    "--allow-dirty",
                ],
                cwd=root,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for _ in range(agents)
        ]
        self.agent = self.agents[0]
        wait_until(
            lambda: (
                sum(
                    a["connected"]
                    for a in httpx.get(f"{self.url}/api/projects/bench/agents").json()
                )
                == agents
            )
        )

    def run(self, workflow: str, n: int) -> tuple[float, int]:
        """Seconds from submit to the run's end, and its result."""
        body = {
            "environment": "production",
            "repository": "flows",
            "target": workflow,
            "arguments": [{"format": "json", "size": len(str(n)), "data": n}],
        }
        with httpx.Client(base_url=self.url, timeout=60) as client:
            started = time.perf_counter()
            response = client.post("/api/projects/bench/runs", json=body)
            assert response.status_code == 201, response.text
            run_id = response.json()["id"]
            while (
                client.get(f"/api/projects/bench/runs/{run_id}/wait").json()["state"] == "running"
            ):
                pass
            elapsed = time.perf_counter() - started
            run = client.get(f"/api/projects/bench/runs/{run_id}").json()
        assert run["state"] == "succeeded", run["state"]
        return elapsed, run["steps"][0]["executions"][-1]["value"]["data"]

    def close(self) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGTERM)
        for agent in self.agents:
            agent.wait(10)
        self.server.terminate()
        self.server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), args.concurrency)
        try:
            stack.run("chain", 10)  # warm up the execution processes
            chain_seconds, chain_result = stack.run("chain", n)
            fanout_seconds, fanout_result = stack.run("fanout", n)
            stack.run("cached", n)  # fills the cache
            cached_seconds, cached_result = stack.run("cached", n)
            # fib(20) nests 21 deep: one agent holds that many from concurrency 6
            # (at most 4 x concurrency, at least 16, waiting ones included).
            fib_seconds, fib_result = (
                stack.run("run_fib", 20) if args.concurrency >= 6 else (float("nan"), 6765)
            )
        finally:
            stack.close()
    assert chain_result == n and fanout_result == cached_result == n * (n + 1) // 2
    assert fib_result == 6765
    process_pool = baseline_process_pool(n)
    chain_ms = chain_seconds * 1000 / n
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "n": n,
        "concurrency": args.concurrency,
        "chain": {
            "seconds": round(chain_seconds, 3),
            "ms_per_task": round(chain_ms, 3),
            "target_ms_per_task": 3.0,
        },
        "fanout": {
            "seconds": round(fanout_seconds, 3),
            "tasks_per_second": round(n / fanout_seconds, 1),
            "target_tasks_per_second": 1000,
        },
        "cached_rerun": {"seconds": round(cached_seconds, 3), "target_seconds": 0.5},
        "fib20_cached": {"seconds": round(fib_seconds, 3), "executions": 21, "cached_calls": 18},
        "baselines": {
            "function_call_ms": round(baseline_function(n), 6),
            "process_pool_round_trip_ms": round(process_pool, 3),
        },
        "ratios": {"chain_vs_process_pool": round(chain_ms / process_pool, 2)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
