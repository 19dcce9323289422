"""The web UI in a real browser: Debian's Chromium, driven by Playwright, against a
real server with real runs. Skipped (with the reason in the summary) where
Chromium or Playwright isn't installed; `.ci/run` installs both."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
from conftest import Workspace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

FLOWS = """
    import coflux as cf

    @cf.task()
    def load(n: int) -> list:
        cf.log_info("loading {n} rows", n=n)
        return list(range(1, n + 1))

    @cf.task()
    def total(rows: list) -> int:
        return sum(rows)

    @cf.workflow()
    def report(n: int) -> int:
        \"\"\"Add up the first n numbers.\"\"\"
        return total(load(n))
"""


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright: pip install -e '.[dev]'")
    if not os.path.exists(CHROMIUM):
        pytest.skip("browser tests need Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def test_a_run_page_from_the_cli_shows_steps_results_and_a_live_rerun(
    workspace: Workspace, browser, tmp_path: Path
) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.cli("envs", "create", "feature", "--base", "production", check=True)
    workspace.start_agent("flows.py")
    workspace.env["COFLUX_ENV"] = "feature"
    workspace.start_agent("flows.py", wait=False)
    workspace.env["COFLUX_ENV"] = "production"
    workspace.wait_for_agents(2)
    submitted = workspace.cli("submit", "flows.py", "report", "4", "--wait", check=True)
    url = re.search(r"https?://\S+", submitted.stdout).group(0)
    run_id = url.split("/runs/")[1].split("?")[0]
    assert url.endswith("?env=production")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    nodes = page.locator("a.node")
    assert nodes.count() == 3
    labels = [nodes.nth(i).get_attribute("aria-label") for i in range(3)]
    assert labels == [
        f"Step {run_id}:1 flows:report: succeeded",
        f"Step {run_id}:2 flows:load: succeeded",
        f"Step {run_id}:3 flows:total: succeeded",
    ]
    assert page.locator("h1 .state").inner_text() == "succeeded"
    assert "loading 4 rows" in page.locator(".logs").inner_text()
    page.screenshot(path=str(tmp_path / "run-1280.png"), full_page=True)

    # Open the `total` step: its result.
    nodes.nth(2).click()
    page.wait_for_url(re.compile(r"step=3"))
    assert page.locator("#step-title").inner_text() == f"Step {run_id}:3 · flows:total"
    assert page.locator(f'tr[data-execution="{run_id}:3:1"] .result').inner_text() == "10"

    # Re-run it in the child environment, from the page; the new execution appears live.
    page.select_option("#rerun-env", "feature")
    page.get_by_role("button", name="Re-run step").click()
    row = page.locator(f'tr[data-execution="{run_id}:3:2"]')
    row.wait_for(timeout=15000)
    state = f"document.querySelector('tr[data-execution=\"{run_id}:3:2\"] .state')"
    page.wait_for_function(f"{state}.textContent === 'succeeded'", timeout=15000)
    assert row.locator("td").nth(1).inner_text() == "feature"
    assert row.locator(".result").inner_text() == "10"
    assert page.url.endswith("?env=feature&step=3")
    page.screenshot(path=str(tmp_path / "run-rerun.png"), full_page=True)

    narrow = browser.new_page(viewport={"width": 390, "height": 844})
    narrow.goto(url)
    assert narrow.locator("a.node").count() == 3
    narrow.screenshot(path=str(tmp_path / "run-390.png"), full_page=True)
    for name in ("run-1280.png", "run-rerun.png", "run-390.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_the_environment_page_lists_workflows_runs_and_agents_and_starts_a_run(
    workspace: Workspace, browser
) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    workspace.cli("submit", "flows.py", "report", "2", "--wait", check=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{workspace.server}/projects/{workspace.project}?env=production")
    assert (
        "Add up the first n numbers." in page.locator("#workflows-title + .workflow").inner_text()
    )
    assert page.locator("table.stack tbody tr").count() == 1
    assert "flows" in page.locator("#agents-title + .workflow").inner_text()
    page.fill("form.launch .field input", "3")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r"/runs/"))
    page.wait_for_function(
        "document.querySelector('h1 .state').textContent === 'succeeded'", timeout=15000
    )
    runs = httpx.get(
        f"{workspace.server}/api/projects/{workspace.project}/runs",
        params={"environment": "production"},
    ).json()
    assert len(runs) == 2 and runs[0]["state"] == "succeeded"


def test_pages_refuse_unknown_things_without_a_500(workspace: Workspace) -> None:
    base = f"{workspace.server}/projects/{workspace.project}"
    assert httpx.get(f"{base}/runs/NOPE123456").status_code == 404
    assert httpx.get(f"{base}?env=..%2Fx").status_code in (404, 422)
    assert httpx.get(f"{base}/assets/a:{'0' * 32}/files/../../etc/passwd").status_code == 404
    assert httpx.get(f"{workspace.server}/projects/nope").status_code == 404
    assert httpx.get(f"{workspace.server}/static/app.css").status_code == 200
