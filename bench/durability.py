"""What `synchronous=FULL` (the shared server's default) costs against NORMAL.

    python -m bench.durability [--n 1000] [--rounds 3]

Chain and fan-out (concurrency 16) through a real server and agent, once per
mode, alternating modes round by round so the machine's noise falls on both.
FULL fsyncs the write-ahead log at every commit; the orchestrator commits a
loop pass's events together (group commit), so the cost is per batch, not per
task: fan-out, whose batches are large, should barely notice; a chain, one
task at a time, pays an fsync per step of its protocol.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from .core import Stack


def measure(mode: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:  # the disk, not a tmpfs
        stack = Stack(Path(tmp), 16, ("--synchronous", mode))
        try:
            stack.run("chain", 10)
            chain, _ = stack.run("chain", n)
            fanout, _ = stack.run("fanout", n)
        finally:
            stack.close()
    return {"chain_ms_per_task": chain * 1000 / n, "fanout_tasks_per_s": n / fanout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"FULL": [], "NORMAL": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode].append(measure(mode, args.n))
    report: dict[str, object] = {"n": args.n, "rounds": args.rounds}
    for mode, rounds in results.items():
        report[mode] = {
            key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]
        }
    full, normal = report["FULL"], report["NORMAL"]
    assert isinstance(full, dict) and isinstance(normal, dict)
    report["full_vs_normal"] = {
        "chain": round(full["chain_ms_per_task"] / normal["chain_ms_per_task"], 2),
        "fanout": round(normal["fanout_tasks_per_s"] / full["fanout_tasks_per_s"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
