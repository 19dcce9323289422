# ruff: noqa: E501  (SQL statements read better whole)
"""The web UI at scale, against a real server on SQLite:

    python -m bench.web [--runs 100000] [--steps 5000] [--compare 1000] [--baseline REF]

Rows are written straight into the project's tables (as ``bench.scale`` does):
``--runs`` one-step runs, one run of ``--steps`` steps (a workflow fanning out
to tasks, with log lines), and one run of ``--compare`` steps that a branch
environment re-ran with new code for half of them. Then, over HTTP (and in
Chromium when it is installed): the run page of the big run (its first screen),
its live body, live updates (the ``/changes`` read, and in Chromium the whole
update), pages of the run list (the first and one 90% down), and the
comparison. Prints JSON; times are medians of 5 (updates: of 10, and 5 in
Chromium). ``--baseline main`` also serves a copy of the data from main's code
and asks both servers for each live update in turns: before and after, in one
run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from .core import free_port, wait_until

T0 = 1_700_000_000


def _fill(engine: Any, runs: int, steps: int, compared: int) -> dict[str, str]:
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"
    value = """'{"format": "json", "size": 2, "data": ' || i || '}'"""
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO environments VALUES (1, 'production', NULL, :t, NULL)"), {"t": T0}
        )
        c.execute(text("INSERT INTO environments VALUES (2, 'feature', 1, :t, NULL)"), {"t": T0})
        # Many small runs: one finished step each.
        c.execute(
            text(
                f"INSERT INTO runs (id, environment_id, created_at) {numbers} "
                "SELECT printf('L%09d', i), 1, :t + i FROM n"
            ),
            {"count": runs, "t": T0},
        )
        c.execute(
            text(
                f"INSERT INTO steps (id, run_id, number, repository, target, type, arguments, "
                f"options, created_at) {numbers} SELECT i, printf('L%09d', i), 1, 'flows', "
                "CASE WHEN i % 3 = 0 THEN 'report' ELSE 'load' END, 'workflow', '[]', '{}', :t + i "
                "FROM n"
            ),
            {"count": runs, "t": T0},
        )
        _executions(c, 1, runs, value)
        # The big run, and the compared run: a root, then tasks it called.
        next_id = runs + 1
        ids = {}
        for run_id, size in (("BIG0000001", steps), ("CMP0000001", compared)):
            ids[run_id] = next_id
            c.execute(
                text("INSERT INTO runs (id, environment_id, created_at) VALUES (:r, 1, :t)"),
                {"r": run_id, "t": T0 + runs + 10},
            )
            c.execute(
                text(
                    f"INSERT INTO steps (id, run_id, number, parent_execution_id, call_index, "
                    f"repository, target, type, arguments, options, code_hash, created_at) "
                    f"{numbers} SELECT :base + i - 1, :r, i, CASE WHEN i = 1 THEN NULL ELSE :base END, "
                    "CASE WHEN i = 1 THEN NULL ELSE i - 2 END, 'flows', "
                    "CASE WHEN i = 1 THEN 'fanout' WHEN i % 50 = 0 THEN 'summarise' "
                    "ELSE 'inc' END, "
                    "CASE WHEN i = 1 THEN 'workflow' ELSE 'task' END, "
                    """'[{"format": "json", "size": 2, "data": ' || i || '}]', '{}', 'h1', :t """
                    "FROM n"
                ),
                {"count": size, "base": next_id, "r": run_id, "t": T0 + runs + 10},
            )
            _executions(c, next_id, next_id + size - 1, value)
            next_id += size
        # Log lines of the big run: three per step.
        c.execute(
            text(
                "INSERT INTO log_messages (id, execution_id, sequence, timestamp, level, "
                f'template, "values") {numbers} SELECT i, :base + (i - 1) / 3, (i - 1) % 3, :t + i * 0.001, '
                "CASE WHEN i % 3 = 0 THEN 'warning' ELSE 'info' END, 'step {n} did a thing', "
                """'{"n": ' || i || '}' FROM n"""
            ),
            {"count": steps * 3, "base": ids["BIG0000001"], "t": T0 + runs + 10},
        )
        # The branch: the compared run's root executed again in feature, its calls
        # new steps; every other one with new code and a new result.
        base = ids["CMP0000001"]
        c.execute(
            text(
                "INSERT INTO executions (id, step_id, attempt, environment_id, created_at, "
                "assigned_at, started_at, incremental) VALUES (:e, :s, 2, 2, :t, :t, :t, 1)"
            ),
            {"e": next_id + compared + 10, "s": base, "t": T0 + runs + 20},
        )
        c.execute(
            text(
                "INSERT INTO results (execution_id, state, value, created_at) "
                """VALUES (:e, 'succeeded', '{"format": "json", "size": 1, "data": 1}', :t)"""
            ),
            {"e": next_id + compared + 10, "t": T0 + runs + 21},
        )
        c.execute(
            text(
                f"INSERT INTO steps (id, run_id, number, parent_execution_id, call_index, "
                f"repository, target, type, arguments, options, code_hash, created_at) {numbers} "
                f"SELECT :first + i - 1, 'CMP0000001', :compared + i, :parent, i - 1, 'flows', "
                "CASE WHEN (i + 1) % 50 = 0 THEN 'summarise' ELSE 'inc' END, 'task', '[]', '{}', "
                "CASE WHEN i % 2 = 0 THEN 'h2' ELSE 'h1' END, :t FROM n"
            ),
            {
                "count": compared - 1,
                "first": next_id,
                "compared": compared,
                "parent": next_id + compared + 10,
                "t": T0 + runs + 20,
            },
        )
        c.execute(
            text(
                f"INSERT INTO executions (id, step_id, attempt, environment_id, created_at, "
                f"assigned_at, started_at, incremental) {numbers} SELECT :first + i - 1, "
                ":first + i - 1, 1, 2, :t, :t, :t, 1 FROM n"
            ),
            {"count": compared - 1, "first": next_id, "t": T0 + runs + 20},
        )
        c.execute(
            text(
                f"INSERT INTO results (execution_id, state, value, created_at) {numbers} "
                "SELECT :first + i - 1, 'succeeded', "
                """'{"format": "json", "size": 2, "data": ' || (CASE WHEN i % 2 = 0 THEN i * 7 """
                "ELSE i + 1 END) || '}', :t FROM n"
            ),
            {"count": compared - 1, "first": next_id, "t": T0 + runs + 21},
        )
        # The big run is still going: its last 200 tasks have no result yet.
        c.execute(
            text("DELETE FROM results WHERE execution_id BETWEEN :a AND :b"),
            {"a": ids["BIG0000001"] + steps - 200, "b": ids["BIG0000001"] + steps - 1},
        )
    return {"big": "BIG0000001", "compared": "CMP0000001", "big_first": ids["BIG0000001"]}


def _live_updates(
    servers: dict[str, tuple[httpx.Client, Any]], big: str, first: int, steps: int
) -> dict:
    """Ten updates, each after ten of the big run's tasks finished: the time of the
    ``/changes`` read a following page makes per update (its log panel cut at its
    limit: ``logs=0``), asked of each server (``after``: this tree; ``baseline``:
    the ``--baseline`` ref's code on a copy of the same data) in turns, so both
    see the same machine. The wall time splits into the handler's (its
    ``Server-Timing``, with its thread's CPU beside) and the rest: the request's
    way through uvicorn and FastAPI, and on a loaded machine, the wait for a core."""
    known = steps
    times: dict[str, list[float]] = {name: [] for name in servers}
    handler: dict[str, list[float]] = {name: [] for name in servers}
    handler_cpu: dict[str, list[float]] = {name: [] for name in servers}
    moved: dict[str, Any] = {}
    for update in range(10):
        since = time.time() - 1.0
        for _, engine in servers.values():
            with engine.begin() as c:
                for k in range(10):
                    execution = first + steps - 200 + update * 10 + k
                    c.execute(
                        text(
                            "INSERT INTO results (execution_id, state, value, created_at) "
                            """VALUES (:e, 'succeeded', '{"format": "json", "size": 1, """
                            """"data": 1}', :t)"""
                        ),
                        {"e": execution, "t": time.time()},
                    )
        order = list(servers) if update % 2 else list(reversed(servers))
        for name in order:
            client = servers[name][0]
            began = time.perf_counter()
            response = client.get(
                f"{big}/changes",
                params={"env": "production", "moved_since": since, "known": known, "logs": 0},
            )
            times[name].append(time.perf_counter() - began)
            assert response.status_code == 200, response.text[:300]
            timing = dict(
                part.strip().split(";dur=") for part in response.headers["server-timing"].split(",")
            )
            handler[name].append(float(timing["handler"]) / 1000)
            handler_cpu[name].append(float(timing["cpu"]) / 1000)
            moved[name] = response.json()
            assert not moved[name]["structure"] and len(moved[name]["steps"]) >= 10, moved
        if len(moved) > 1:  # the same answer from both (each copy has its own times)
            same = [
                (
                    sorted(m["groups"], key=str),
                    [(s["id"], s["state"]) for s in m["steps"]],
                    m["active"],
                )
                for m in moved.values()
            ]
            assert all(m == same[0] for m in same), same
    report: dict[str, Any] = {"live_update_groups": len(moved["after"]["groups"])}
    for name in servers:
        suffix = "" if name == "after" else f"_{name}"
        report[f"live_update_changes{suffix}_s"] = round(statistics.median(times[name]), 4)
        report[f"live_update_changes{suffix}_max_s"] = round(max(times[name]), 4)
        report[f"live_update_changes{suffix}_handler_s"] = round(
            statistics.median(handler[name]), 4
        )
        report[f"live_update_changes{suffix}_handler_cpu_s"] = round(
            statistics.median(handler_cpu[name]), 4
        )
    return report


def _browser_live_updates(url: str, engine: Any, first: int, steps: int) -> dict | None:
    """The big run's page in Chromium following five updates (ten tasks finishing
    each): per update, the page's fetch of ``/changes`` and its applying the patch
    (as ``app.js`` times them), and the whole, commit to patched page."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    root = "document.documentElement.getAttribute"
    fetches, applies, whole = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_function(f"{root}('data-live') === 'events'")
        for update in range(5):
            done = int(page.evaluate(f"{root}('data-patches') || 0"))
            began = time.perf_counter()
            with engine.begin() as c:
                for k in range(10):
                    execution = first + steps - 100 + update * 10 + k
                    c.execute(
                        text(
                            "INSERT INTO results (execution_id, state, value, created_at) "
                            """VALUES (:e, 'succeeded', '{"format": "json", "size": 1, """
                            """"data": 1}', :t)"""
                        ),
                        {"e": execution, "t": time.time()},
                    )
            page.wait_for_function(f"+({root}('data-patches') || 0) > {done}", timeout=60000)
            whole.append(time.perf_counter() - began)
            fetches.append(float(page.evaluate(f"{root}('data-update-fetch-ms')")) / 1000)
            applies.append(float(page.evaluate(f"{root}('data-update-apply-ms')")) / 1000)
        redraws = page.evaluate(f"{root}('data-redraws')")
        browser.close()
    return {
        "live_update_browser_fetch_s": round(statistics.median(fetches), 4),
        "live_update_browser_apply_s": round(statistics.median(applies), 4),
        # Includes the wait for the next look of the event stream (every 0.25 s).
        "live_update_commit_to_patched_s": round(statistics.median(whole), 4),
        "live_update_browser_redraws": int(redraws or 0),
    }


def _executions(c: Any, first: int, last: int, value: str) -> None:
    c.execute(
        text(
            "INSERT INTO executions (id, step_id, attempt, environment_id, created_at, "
            "assigned_at, started_at, incremental) SELECT id, id, 1, 1, created_at, created_at, created_at, 0 "
            "FROM steps WHERE id BETWEEN :a AND :b"
        ),
        {"a": first, "b": last},
    )
    c.execute(
        text(
            "INSERT INTO results (execution_id, state, value, created_at) "
            f"SELECT id, 'succeeded', {value.replace('|| i ||', '|| id ||')}, "
            "created_at + 0.5 FROM steps WHERE id BETWEEN :a AND :b"
        ),
        {"a": first, "b": last},
    )


#: The server's process id, for its CPU time (``SERVER_CPU``).
SERVER: list[int] = []
#: CPU seconds the server spent per request, by measurement (a figure that holds
#: on a machine shared with other work, where wall time doesn't).
SERVER_CPU: dict[str, float] = {}


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(client: httpx.Client, path: str, **params: Any) -> tuple[float, httpx.Response]:
    times, response = [], None
    cpu = _cpu(SERVER[0]) if SERVER else 0.0
    for _ in range(5):
        began = time.perf_counter()
        response = client.get(path, params=params)
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    if SERVER:
        key = path.rsplit("/", 1)[-1] + ("?" + "&".join(sorted(params)) if params else "")
        SERVER_CPU[key] = round((_cpu(SERVER[0]) - cpu) / 5, 4)
    return round(statistics.median(times), 4), response


def _browser_first_screen(url: str) -> float | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)  # warm
        times = []
        for _ in range(3):
            began = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")
            page.locator("a.node").first.wait_for()
            times.append(time.perf_counter() - began)
        browser.close()
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--compare", type=int, default=1000)
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="a git ref whose code serves a copy of the same data beside this tree's, "
        "for the live updates (before and after, measured in turns in one run)",
    )
    args = parser.parse_args()
    from coflux.remote.server.db import open_database

    root = Path(tempfile.mkdtemp(prefix="coflux-bench-web-"))
    database = open_database(None, root / "data" / "projects", "NORMAL")
    engine = database.open("bench")
    began = time.perf_counter()
    runs = _fill(engine, args.runs, args.steps, args.compare)
    filled = time.perf_counter() - began
    servers: list[subprocess.Popen[bytes]] = []
    baseline: dict[str, Any] = {}
    try:
        if args.baseline:
            engine.dispose()
            database.close()
            shutil.copytree(root / "data", root / "baseline-data")
            database = open_database(None, root / "data" / "projects", "NORMAL")
            engine = database.open("bench")
            baseline["database"] = open_database(
                None, root / "baseline-data" / "projects", "NORMAL"
            )
            baseline["engine"] = baseline["database"].open("bench")
            code = root / "baseline-code"
            code.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.baseline, "coflux"], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
            baseline["url"], process = _server(root / "baseline-data", code)
            servers.append(process)
        url, process = _server(root / "data", None)
        servers.insert(0, process)
        SERVER.append(process.pid)
        report: dict[str, Any] = {
            "runs": args.runs,
            "steps": args.steps,
            "compared_steps": args.compare,
            "fill_s": round(filled, 1),
            "baseline": args.baseline,
        }
        with httpx.Client(base_url=url, timeout=120) as client:
            big = f"/projects/bench/runs/{runs['big']}"
            client.get(big, params={"env": "production"})  # warm
            report["run_page_s"], page = _median(client, big, env="production")
            report["run_page_kb"] = round(len(page.content) / 1024)
            report["run_live_body_s"], _ = _median(client, f"{big}/live", env="production")
            report["run_events_fingerprint_s"] = _fingerprint(client, big)
            live = {"after": (client, engine)}
            if baseline:
                before = httpx.Client(base_url=baseline["url"], timeout=120)
                before.get(big, params={"env": "production"})  # warm
                live["baseline"] = (before, baseline["engine"])
            try:
                report.update(_live_updates(live, big, runs["big_first"], args.steps))
            finally:
                if baseline:
                    before.close()
            report["list_first_page_s"], page = _median(client, "/projects/bench", env="production")
            deep = T0 + args.runs // 10
            report["list_page_90pct_down_s"], page = _median(
                client, "/projects/bench", env="production", before=f"{float(deep)!r}_L"
            )
            assert page.text.count('<tr data-run="') == 50, "a deep page has 50 runs"
            report["list_filtered_state_workflow_s"], _ = _median(
                client,
                "/projects/bench",
                env="production",
                workflow="flows:report",
                state="succeeded",
            )
            report["list_search_s"], _ = _median(
                client, "/projects/bench", env="production", q="L00009"
            )
            diff_path = f"/api/projects/bench/runs/{runs['compared']}/diff"
            report["compare_api_s"], diff = _diff(client, diff_path)
            report["compare_summary"] = diff.json()["summary"]
            report["compare_page_s"], _ = _median(
                client,
                f"/projects/bench/runs/{runs['compared']}/compare",
                env="feature",
                base="production",
            )
        report["server_cpu_s_per_request"] = SERVER_CPU
        report["load_average"] = os.getloadavg()[0]
        report["run_page_first_screen_chromium_s"] = _browser_first_screen(
            f"{url}{big}?env=production"
        )
        pages = [("", url, engine)]
        if baseline:
            pages.append(("_baseline", baseline["url"], baseline["engine"]))
        for suffix, where, db in pages:
            measured = _browser_live_updates(
                f"{where}{big}?env=production", db, runs["big_first"], args.steps
            )
            report.update(
                {
                    k.replace("live_update", f"live_update{suffix}"): v
                    for k, v in (measured or {}).items()
                }
            )
        report["load_average_end"] = os.getloadavg()[0]
    finally:
        for process in servers:
            process.terminate()
            process.wait(30)
        engine.dispose()
        database.close()
        if baseline:
            baseline["engine"].dispose()
            baseline["database"].close()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))


def _server(data: Path, code: Path | None) -> tuple[str, subprocess.Popen[bytes]]:
    """A server over ``data``, run from ``code`` (a copy of another ref's package) or this tree."""
    port = free_port()
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    process = subprocess.Popen(
        [sys.executable, "-m", "coflux", "server", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=str(code) if code is not None else None,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/api/health").status_code == 200, timeout=120)
    return url, process


def _diff(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    times, response = [], None
    cpu = _cpu(SERVER[0])
    for _ in range(5):
        began = time.perf_counter()
        response = client.get(path, params=[("env", "production"), ("env", "feature")])
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text[:300]
    SERVER_CPU["diff"] = round((_cpu(SERVER[0]) - cpu) / 5, 4)
    return round(statistics.median(times), 4), response


def _fingerprint(client: httpx.Client, big: str) -> float | None:
    """Time to the first event of the live stream (what the server does per look)."""
    began = time.perf_counter()
    with client.stream("GET", f"{big}/events") as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                return round(time.perf_counter() - began, 4)
    return None


if __name__ == "__main__":
    main()
