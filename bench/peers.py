"""The peers in the suite: Prefect, Celery and DBOS, each in a virtual environment of its own.

    python -m bench.peers [--n 1000] [--only celery]

Each peer is a script (bench/<name>_peer.py) run by the interpreter of its own
environment, `bench/.venv-<name>`, which this module makes on first use with
pip (from the package index the machine is set up with; nothing else is
downloaded) and keeps for later runs. A peer's services are started by its
script on loopback: Redis for Celery (Debian's `redis-server`), Prefect's own
server; DBOS runs on SQLite, and on a throwaway PostgreSQL cluster made with
`initdb` when PostgreSQL is installed. None of them is ever a dependency of
Coflux. A peer that can't be installed or started is reported as a reason,
never as a figure.

`peers(n, workloads)` gives each peer's JSON and the Coflux / peer ratios of
chain (ms per task), fan-out (tasks per second) and cached re-run (seconds),
Coflux measured at concurrency 16 in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

#: What each peer's environment installs: the versions the issue's table was measured with.
REQUIREMENTS = {
    # Prefect 3.8's server breaks on FastAPI 0.155 and later.
    "prefect": ["prefect==3.8.*", "fastapi<0.155"],
    "celery": ["celery[redis]==5.7.*"],
    "dbos": ["dbos==3.4.*", "psycopg[binary]>=3.1"],
}


def peer_python(name: str) -> str:
    """The interpreter of the peer's environment, made and installed if it isn't there.

    ``COFLUX_BENCH_<NAME>_PYTHON`` names another interpreter to use instead.
    Raises RuntimeError with pip's last lines when the install fails.
    """
    configured = os.environ.get(f"COFLUX_BENCH_{name.upper()}_PYTHON")
    if configured:
        return configured
    venv = HERE / f".venv-{name}"
    python = venv / "bin" / "python"
    marker = venv / "installed.json"
    wanted = json.dumps(REQUIREMENTS[name])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return str(python)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS[name]],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if installed.returncode != 0:
        tail = " ".join(installed.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"pip install {' '.join(REQUIREMENTS[name])} failed: {tail}")
    marker.write_text(wanted)
    return str(python)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """A PostgreSQL cluster of the tests' kind (tests/postgres.py), or None if not installed."""
    try:
        from tests.postgres import Cluster, binaries
    except ImportError:  # psycopg isn't in this environment
        yield None
        return
    bindir = binaries()
    if bindir is None:
        yield None
        return
    from .core import free_port

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        os.chmod(tmp, 0o755)  # the cluster runs as the postgres user when we are root
        try:
            cluster = Cluster(bindir, Path(tmp) / "pg", free_port()).start()
        except (OSError, subprocess.SubprocessError):
            yield None
            return
        try:
            yield cluster.new_database()
        finally:
            cluster.stop()


def run_peer(name: str, n: int, *extra: str) -> dict[str, Any] | str:
    """The peer's JSON document, or why there is none."""
    try:
        python = peer_python(name)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return f"not installed: {e}"
    done = subprocess.run(
        [python, str(HERE / f"{name}_peer.py"), "--n", str(n), *extra],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        return f"failed: {' '.join(done.stderr.strip().splitlines()[-3:])}"
    return json.loads(done.stdout)


def run_all(n: int, only: list[str] | None = None) -> dict[str, dict[str, Any] | str]:
    results: dict[str, dict[str, Any] | str] = {}
    for name in only or list(REQUIREMENTS):
        if name == "dbos":
            with throwaway_postgres() as postgres:
                results[name] = run_peer(name, n, *(["--postgres", postgres] if postgres else []))
        else:
            results[name] = run_peer(name, n)
    return results


def ratios(workloads: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """Coflux / peer: below 1 is better for Coflux, except tasks per second (above 1)."""
    out: dict[str, float | None] = {
        "chain_ms_per_task": workloads["chain"][16] / peer["chain_ms_per_task"],
        "fanout_tasks_per_second": workloads["fanout"][16] / peer["fanout_tasks_per_second"],
        "cached_rerun_s": None,
    }
    if peer.get("cached_rerun_s"):
        out["cached_rerun_s"] = workloads["cached_rerun_s"] / peer["cached_rerun_s"]
    return {name: None if r is None else round(r, 3) for name, r in out.items()}


def peers(n: int, workloads: dict[str, Any]) -> dict[str, Any]:
    """Every peer's figures, and Coflux / peer for each workload."""
    report: dict[str, Any] = {}
    for name, result in run_all(n).items():
        if isinstance(result, str):
            report[name] = result
        else:
            report[name] = {**result, "ratios": ratios(workloads, result)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--only", action="append", choices=list(REQUIREMENTS))
    args = parser.parse_args()
    print(json.dumps(run_all(args.n, args.only), indent=2))


if __name__ == "__main__":
    main()
