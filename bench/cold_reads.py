"""Cold read commands against a shared server, beside a bare Python start, in one run.

    python -m bench.cold_reads [--repeat 11] [--before SRC]

Starts a server and an agent (bench.core.Stack), runs a 10-step workflow, then
times fresh processes of `coflux runs list --json`, `runs show RUN --json`,
`status --json`, `logs RUN` and `coflux --help`, in two workspaces: one with
`COFLUX_ENV` set (as `python -m bench` measures) and one a git repository on
`main` with no environment given (derived from the branch, as people type
them). Every round times `python -c pass` first, then each command; rounds
alternate, so a noisy machine slows all figures alike. With `--before SRC` (a
folder holding another version's `coflux` package, e.g. from `git archive`),
each round also times that version, interleaved with this one. Prints one
JSON document: median ms per command and its ratio to the bare start
(target: at most 8, issue 25), wall time and CPU time (user + system) alike;
the load average at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .core import Stack


def _timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall ms of one process; its CPU ms (user + system) goes to ``_CPU``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    _CPU.append(cpu * 1000)
    return wall


#: The CPU ms of each process ``_timed`` ran, in order: on a loaded machine a
#: process's CPU time moves much less than its wall time.
_CPU: list[float] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--before", type=Path, help="another version's source folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "stack").mkdir()
        stack = Stack(root / "stack", 4)
        try:
            stack.run("chain", 10)
            with httpx.Client(base_url=stack.url) as client:
                listed = client.get(
                    "/api/projects/bench/runs", params={"environment": "production"}
                )
                run_id = listed.json()[0]["id"]
            env = {k: v for k, v in stack.env.items() if not k.startswith("COFLUX_")}
            env.update(COFLUX_SERVER=stack.url, COFLUX_PROJECT="bench")
            repo = root / "repo"
            repo.mkdir()
            for git_args in (
                ["init", "-q", "-b", "main"],
                ["commit", "-q", "--allow-empty", "-m", "empty"],
            ):
                subprocess.run(
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b", *git_args],
                    cwd=repo,
                    check=True,
                )
            plain = root / "plain"
            plain.mkdir()
            workspaces = {
                "env": (plain, {**env, "COFLUX_ENV": "production"}),
                "git": (repo, env),
            }
            commands = {
                "runs_list": ["runs", "list", "--json"],
                "runs_show": ["runs", "show", run_id, "--json"],
                "status": ["status", "--json"],
                "logs": ["logs", run_id],
                "help": ["--help"],
            }
            versions = {"after": None}
            if args.before is not None:
                versions = {"before": args.before.resolve(), "after": None}
            times: dict[str, list[float]] = {"python": []}
            cpu: dict[str, list[float]] = {"python": []}
            # A first call of each makes the workspace's state.db (not what is measured).
            for version, source in versions.items():
                for place, (cwd, wenv) in workspaces.items():
                    run_env = dict(wenv)
                    if source is not None:
                        run_env["PYTHONPATH"] = str(source)
                    for name, command in commands.items():
                        _timed([sys.executable, "-m", "coflux", *command], cwd, run_env)
                        times[f"{version}/{place}/{name}"] = []
            for _ in range(args.repeat):
                times["python"].append(_timed([sys.executable, "-c", "pass"], root, env))
                cpu["python"].append(_CPU[-1])
                for place, (cwd, wenv) in workspaces.items():
                    for name, command in commands.items():
                        for version, source in versions.items():
                            run_env = dict(wenv)
                            if source is not None:
                                run_env["PYTHONPATH"] = str(source)
                            key = f"{version}/{place}/{name}"
                            times[key].append(
                                _timed([sys.executable, "-m", "coflux", *command], cwd, run_env)
                            )
                            cpu.setdefault(key, []).append(_CPU[-1])
        finally:
            stack.close()
    python = statistics.median(times["python"])
    python_cpu = statistics.median(cpu["python"])
    out = {
        "repeat": args.repeat,
        "load_average": os.getloadavg(),
        "python_ms": round(python, 1),
        "python_cpu_ms": round(python_cpu, 1),
        "git": shutil.which("git") is not None,
        "cpus": os.cpu_count(),
        "ms": {k: round(statistics.median(v), 1) for k, v in times.items() if k != "python"},
        "ratio": {
            k: round(statistics.median(v) / python, 2) for k, v in times.items() if k != "python"
        },
        "cpu_ms": {k: round(statistics.median(v), 1) for k, v in cpu.items() if k != "python"},
        "cpu_ratio": {
            k: round(statistics.median(v) / python_cpu, 2) for k, v in cpu.items() if k != "python"
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
