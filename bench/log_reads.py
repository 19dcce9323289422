"""Reading the logs of a big run (S26, docs/reliability.md: within 2 s), beside its floors.

    python -m bench.log_reads [--repeat 3]

A run of four noisy tasks, as in S26 but smaller (each still reaches the
per-execution budget of 8 MiB / 10,000 messages, so the stored logs are as big
as S26's): 10,000 lines of 1,000 characters, one 16 MiB line, 16 MiB of
invalid UTF-8 and 20,000 log calls, plus a quiet task. Then, each round, in
turn: ``coflux logs RUN --json`` (a fresh CLI process against the server, the
figure S26 promises), the same through the API alone (every page of ``GET .../logs``), and two
floors: a bare ``python -c pass``, and reading the same rows straight from the
project's SQLite file with ``sqlite3`` and encoding them as JSON (no server, no
HTTP, no CLI). Medians of ``--repeat``. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .core import Stack

NOISY = """
import sys
import coflux as cf

@cf.task()
def many_lines() -> str:
    line = "y" * 1000
    for _ in range(10_000):
        print(line)
    return "many lines"

@cf.task()
def one_long_line() -> str:
    chunk = "x" * (1024 * 1024)
    for _ in range(16):
        sys.stdout.write(chunk)
    return "one long line"

@cf.task()
def invalid_bytes() -> str:
    for _ in range(16):
        sys.stderr.buffer.write(b"\\xff\\xfe" * (512 * 1024))
    return "invalid bytes"

@cf.task()
def many_logs() -> str:
    for i in range(20_000):
        cf.log_info("message {i}", i=i)
    return "many logs"

@cf.task()
def quiet() -> str:
    for i in range(10):
        cf.log_info("line {i}", i=i)
    return "quiet"

@cf.workflow()
def noisy(n: int) -> int:
    calls = [t.submit() for t in (many_lines, one_long_line, invalid_bytes, many_logs, quiet)]
    return len([c.result() for c in calls])
"""

#: S26's figure (docs/reliability.md).
TARGET_S = 2.0


def _timed(command: list[str], **kwargs: Any) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, **kwargs)
    return time.perf_counter() - started, done


def _sqlite_floor(database: Path) -> tuple[float, int]:
    """Read every log row and encode them as JSON, in this process: no server."""
    started = time.perf_counter()
    with sqlite3.connect(database) as c:
        rows = c.execute(
            'SELECT execution_id, sequence, timestamp, level, template, "values"'
            " FROM log_messages ORDER BY execution_id, sequence"
        ).fetchall()
    text = json.dumps(
        [
            {
                "execution_id": e,
                "sequence": s,
                "timestamp": t,
                "level": lv,
                "template": m,
                "values": v,
            }
            for e, s, t, lv, m, v in rows
        ]
    )
    assert text
    return time.perf_counter() - started, len(rows)


def _read_pages(client: httpx.Client, run_id: str) -> int:
    """Every page of the run's logs through the API, as the CLI reads them."""
    after, count = 0, 0
    while True:
        response = client.get(f"/api/projects/bench/runs/{run_id}/logs", params={"after": after})
        assert response.status_code == 200, response.text
        page = response.json()
        if not page:
            return count
        count += len(page)
        after = page[-1]["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stack = Stack(root, 8, workflows=NOISY)
        try:
            made, _ = stack.run("noisy", 0)
            with httpx.Client(base_url=stack.url, timeout=120) as client:
                runs = client.get(
                    "/api/projects/bench/runs", params={"environment": "production"}
                ).json()
                run_id = runs[0]["id"]
                rounds: dict[str, list[float]] = {"cli": [], "api": [], "python": [], "sqlite": []}
                entries = rows = size = 0
                for _ in range(args.repeat):
                    seconds, done = _timed(
                        [sys.executable, "-m", "coflux", "logs", run_id, "--json"],
                        env=stack.env,
                        cwd=root,
                    )
                    assert done.returncode == 0, done.stderr
                    rounds["cli"].append(seconds)
                    entries, size = len(json.loads(done.stdout)), len(done.stdout)
                    started = time.perf_counter()
                    paged = _read_pages(client, run_id)
                    rounds["api"].append(time.perf_counter() - started)
                    assert paged == entries, (paged, entries)
                    seconds, _ = _timed([sys.executable, "-c", "pass"])
                    rounds["python"].append(seconds)
                    seconds, rows = _sqlite_floor(root / "data" / "projects" / "bench.sqlite")
                    rounds["sqlite"].append(seconds)
        finally:
            stack.close()
    median = {k: statistics.median(v) for k, v in rounds.items()}
    report = {
        "run_s": round(made, 2),
        "log_entries": entries,
        "stored_rows": rows,
        "json_mib": round(size / 2**20, 1),
        "cli_logs_json_s": round(median["cli"], 3),
        "api_logs_s": round(median["api"], 3),
        "target_s": TARGET_S,
        "met": median["cli"] < TARGET_S,
        "baselines": {
            "python_start_s": round(median["python"], 3),
            "sqlite_read_and_encode_s": round(median["sqlite"], 3),
        },
        "ratios": {
            "cli_vs_sqlite_floor": round(median["cli"] / median["sqlite"], 2),
            "api_vs_sqlite_floor": round(median["api"] / median["sqlite"], 2),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
