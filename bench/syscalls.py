"""System calls per task on the hot path, by process (JSON on stdout).

``python -m bench.syscalls [--n 300] [--workload chain|fanout]``. A server and
an agent (``bench.core.Stack``, concurrency 16) run the workload once to warm
up, then ``strace -c -f`` counts the calls of the server, the agent and its
execution processes while it runs N tasks. Counts do not depend on how loaded
the machine is, as times do: frames written and read (``sendto``/``write``,
``recvfrom``/``read``), commits (six ``fcntl`` lock calls each in SQLite) and
fsyncs (``fdatasync``) per task say what a change saved when wall-clock runs
can't tell it from the noise. Needs ``strace`` (and ptrace rights).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from .core import Stack

#: One row of ``strace -c``: % time, seconds, usecs/call, calls, [errors], name.
ROW = re.compile(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$")


def count(workload: str, n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), 16)
        try:
            stack.run(workload, 50)
            listed = subprocess.run(
                ["pgrep", "-P", str(stack.agent.pid)], capture_output=True, text=True
            ).stdout.split()
            processes = {
                "server": [stack.server.pid],
                "agent": [stack.agent.pid],
                "workers": [int(pid) for pid in listed],
            }
            tracers = {}
            for name, pids in processes.items():
                args = ["strace", "-c", "-f", "-o", f"{tmp}/{name}.txt"]
                for pid in pids:
                    args += ["-p", str(pid)]
                tracers[name] = subprocess.Popen(args, stderr=subprocess.DEVNULL)
            time.sleep(1.5)  # strace attached (it says nothing when it is)
            stack.run(workload, n)
            for tracer in tracers.values():
                tracer.send_signal(2)
            for tracer in tracers.values():
                tracer.wait()
            out: dict[str, object] = {"workload": workload, "n": n}
            for name in tracers:
                counts = {}
                for line in Path(f"{tmp}/{name}.txt").read_text().splitlines():
                    match = ROW.match(line)
                    if match and match.group(2) != "total":
                        counts[match.group(2)] = round(int(match.group(1)) / n, 2)
                out[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
            return out
        finally:
            stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--workload", choices=["chain", "fanout"], default="chain")
    args = parser.parse_args()
    print(json.dumps(count(args.workload, args.n)))


if __name__ == "__main__":
    main()
