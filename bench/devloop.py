"""The dev loop: from saving a file to the new code serving a re-run, through a real stack.

    python -m bench.devloop [--repeat 5] [--steps 20]

A git repository with a production run of a pipeline of STEPS tasks; then, on
a branch, `coflux dev` watching it. Each round edits one task (changing its
output), and measures:
- reload: from writing the file to `coflux dev` reporting the reload;
- rerun: from then to the re-run of the workflow finishing, with the edited
  task and its consumers executed and the other tasks reused;
- total: save to result (target: under 1 s);
and an incremental re-run with no change, for comparison.
Baselines in the same run: starting a Python process that imports the module
(the floor for serving new code in a new process), and a forced re-run of the
same workflow (every task executed) for comparison with the incremental one.

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from .core import free_port, wait_until

PIPELINE = """
import coflux as cf

@cf.task()
def step(i: int, x: int) -> int:
    return x + i * FACTOR

FACTOR = 1

@cf.task()
def edited(x: int) -> int:
    return x + 0  # EDIT

@cf.workflow()
def pipeline(n: int) -> int:
    x = 0
    for i in range(n):
        x = step(i, x)
    return edited(x)
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def baseline_import(root: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import flows"], cwd=root, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "COFLUX_SERVER": url, "COFLUX_PROJECT": "bench"}
        env.pop("COFLUX_ENV", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "coflux", "server", "--port", str(port)]
            + ["--data-dir", str(Path(tmp) / "data")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            wait_until(lambda: httpx.get(f"{url}/api/health").status_code == 200)
            httpx.post(f"{url}/api/projects", json={"name": "bench"}).raise_for_status()
            (root / "flows.py").write_text(textwrap.dedent(PIPELINE))
            (root / ".coflux.toml").write_text('modules = ["flows.py"]\n')
            (root / ".gitignore").write_text(".coflux/\n__pycache__/\ndev.log\n")
            _git(root, "init", "-q", "-b", "main")
            _git(root, "add", "-A")
            _git(root, "-c", "user.email=b@example.com", "-c", "user.name=B", "commit", "-qm", "x")

            def cli(*command: str) -> dict:
                out = subprocess.run(
                    [sys.executable, "-m", "coflux", *command, "--json"],
                    cwd=root,
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                return json.loads(out)

            agent = subprocess.Popen(
                [sys.executable, "-m", "coflux", "agent"],
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            processes.append(agent)
            wait_until(
                lambda: any(
                    a["connected"] for a in httpx.get(f"{url}/api/projects/bench/agents").json()
                )
            )
            run = cli("submit", "flows.py", "pipeline", str(args.steps), "--wait")
            os.killpg(agent.pid, signal.SIGTERM)
            agent.wait(10)

            _git(root, "switch", "-q", "-c", "feature/bench")
            log_path = root / "dev.log"
            with open(log_path, "wb") as log:
                dev = subprocess.Popen(
                    [sys.executable, "-m", "coflux", "dev"],
                    cwd=root,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            processes.append(dev)
            wait_until(lambda: "serving flows" in log_path.read_text())

            client = httpx.Client(base_url=url, timeout=60)

            def rerun(force: bool) -> dict:
                response = client.post(
                    f"/api/projects/bench/runs/{run['id']}/steps/1/rerun",
                    json={"environment": "feature/bench", "force": force},
                )
                response.raise_for_status()
                while not client.get(
                    f"/api/projects/bench/runs/{run['id']}/wait", params={"timeout": 30}
                ).json()["step_finished"]:
                    pass
                return client.get(
                    f"/api/projects/bench/runs/{run['id']}",
                    params={"environment": "feature/bench"},
                ).json()

            rerun(False)  # warm up
            rounds = []
            for i in range(1, args.repeat + 1):
                reloads = log_path.read_text().count("reloaded in")
                source = textwrap.dedent(PIPELINE).replace("x + 0  # EDIT", f"x + {i}  # EDIT")
                saved = time.perf_counter()
                (root / "flows.py").write_text(source)
                wait_until(
                    lambda n=reloads: log_path.read_text().count("reloaded in") > n, every=0.005
                )
                reloaded = time.perf_counter()
                seen = rerun(False)
                finished = time.perf_counter()
                expected = sum(range(args.steps)) + i
                result = seen["steps"][0]["executions"][-1]["value"]["data"]
                assert result == expected, (result, expected)
                latest = seen["steps"][0]["executions"][-1]["id"]
                executed = [
                    s["target"]
                    for s in seen["steps"]
                    if s["parent"] == latest and s["executions"][-1]["reused_from"] is None
                ]
                rounds.append(
                    {
                        "reload": reloaded - saved,
                        "rerun": finished - reloaded,
                        "total": finished - saved,
                        "executed_tasks": executed,
                    }
                )
            started = time.perf_counter()
            rerun(False)
            warm = time.perf_counter() - started
            started = time.perf_counter()
            rerun(True)
            forced = time.perf_counter() - started
            imports = [baseline_import(root) for _ in range(3)]
        finally:
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGINT)
                    process.wait(20)
            server.terminate()
            server.wait(10)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 3)

    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "steps": args.steps,
        "rounds": len(rounds),
        "save_to_reload_s": median("reload"),
        "incremental_rerun_s": median("rerun"),
        "save_to_result_s": median("total"),
        "target_save_to_result_s": 1.0,
        "tasks_executed_per_rerun": rounds[-1]["executed_tasks"],
        "incremental_rerun_unchanged_code_s": round(warm, 3),
        "baselines": {
            "python_import_process_s": round(statistics.median(imports), 3),
            "forced_rerun_s": round(forced, 3),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
