# ruff: noqa: F811  (the tests take the `browser` fixture imported from test_web)
"""The issue's done-when, as a colleague given only a link: a realistic run (a
fan-out, a task that fails then succeeds on retry, a table-sized value, an
asset, a branch's re-run with changed code) seen on the run page, the
comparison, the environment page and the run list, at 1280 and 390 px, each
checked by axe-core and saved to tests/artifacts/ to look at."""

from __future__ import annotations

import re

from conftest import Workspace
from test_web import browser  # noqa: F401  (the fixture, used by name)
from test_web_ui import _axe, _shots

TOUR = """
    from pathlib import Path
    import coflux as cf

    @cf.task()
    def fetch_orders(day: str) -> dict:
        cf.log_info("fetching orders for {day}", day=day)
        return {
            "columns": ["order_id", "region", "amount"],
            "rows": [[i, ["north", "south", "east"][i % 3], round(i * 1.37, 2)]
                     for i in range(600)],
        }

    @cf.task()
    def score(region: str, orders: dict) -> float:
        return round(sum(r[2] for r in orders["rows"] if r[1] == region) * RATE, 2)

    @cf.task(retries=2)
    def upload(total: float, marker: str) -> str:
        if not Path(marker).exists():
            Path(marker).touch()
            raise ConnectionError("storage timed out after 30 s")
        return "uploaded"

    @cf.task()
    def write_report(scores: list) -> str:
        Path("report").mkdir()
        Path("report/summary.csv").write_text("region,score\\n" + "".join(
            f"{i},{s}\\n" for i, s in enumerate(scores)))
        cf.persist_asset("report")
        return "written"

    @cf.workflow()
    def daily_sales(day: str, marker: str) -> dict:
        \"\"\"The day's orders scored by region, reported and uploaded.\"\"\"
        orders = fetch_orders(day)
        regions = [f"region-{i}" for i in range(10)]
        scores = [score.submit(["north", "south", "east"][i % 3], orders) for i in range(10)]
        values = [s.result() for s in scores]
        write_report(values)
        return {"total": sum(values), "upload": upload(sum(values), marker), "regions": regions}

    RATE = 1.0
"""


def test_a_colleague_reads_a_run_from_its_link(workspace: Workspace, browser, tmp_path) -> None:
    workspace.write("flows.py", TOUR)
    workspace.cli("envs", "create", "feature", "--base", "production", check=True)
    workspace.start_agent("flows.py")
    marker = tmp_path / "uploaded-once"
    out = workspace.cli(
        "submit", "flows.py", "daily_sales", '"2026-12-01"', f'"{marker}"', "--wait", check=True
    ).stdout
    run_id = re.search(r"/runs/([A-Z0-9]+)", out).group(1)
    workspace.write("flows.py", TOUR.replace("RATE = 1.0", "RATE = 1.1"))
    workspace.env["COFLUX_ENV"] = "feature"
    workspace.start_agent("flows.py", wait=False)
    workspace.wait_for_agents(2)
    workspace.cli("rerun", f"{run_id}:1", "--wait", check=True)

    base = f"{workspace.server}/projects/{workspace.project}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/runs/{run_id}?env=production")
    assert page.locator("h1 .state").inner_text() == "succeeded"
    took = page.locator("#run-duration").inner_text()
    names = page.locator(".timeline .row .name").all_inner_texts()
    assert names[:2] == ["1. daily_sales", "2. fetch_orders"]
    assert names[-2:] == ["14. upload", "14. upload (attempt 2)"]
    assert _axe(page) == []
    _shots(page, "tour-run")
    # The report's asset, from its step: files with sizes, a preview of the CSV.
    page.locator('a.node[aria-label*="flows:write_report"]').click()
    page.locator(".asset a").first.click()
    page.wait_for_url(re.compile(r"/assets/a:"))
    assert "region,score" in page.locator("main").inner_text()
    assert _axe(page) == []
    _shots(page, "tour-asset")
    page.goto(f"{base}/runs/{run_id}?env=production")
    upload = page.locator('a.node[aria-label*="flows:upload"]')
    assert upload.get_attribute("aria-label").endswith(": succeeded, 2 attempts")
    page.goto(
        f"{base}/runs/{run_id}?env=production&step={upload.get_attribute('href').split('step=')[1]}"
    )
    assert _axe(page) == []
    _shots(page, "tour-retried-step")
    page.goto(f"{base}/runs/{run_id}?env=feature")
    # The branch's log: of the executions it shows, not production's it replaced.
    # Its fetch was reused and its upload succeeded at once: nothing logged, and
    # production's failure (14:1, with its traceback) is not the branch's.
    assert page.locator(".logs .line").count() == 0
    page.goto(f"{base}/runs/{run_id}?env=production")
    assert page.locator(".logs .line .execution").all_inner_texts() == [
        f"{run_id}:2:1",
        f"{run_id}:14:1",
    ]
    page.goto(f"{base}/runs/{run_id}?env=feature")
    assert _axe(page) == []
    _shots(page, "tour-run-feature")
    page.goto(f"{base}/runs/{run_id}/compare?env=feature&base=production")
    assert _axe(page) == []
    _shots(page, "tour-compare")
    page.goto(f"{base}?env=production")
    # The run as production ran it: the branch's later re-run is the branch's.
    assert page.locator("table.runs tbody tr .duration").inner_text() == took
    assert _axe(page) == []
    _shots(page, "tour-environment")
    page.goto(f"{base}?env=feature")
    _shots(page, "tour-environment-feature")
