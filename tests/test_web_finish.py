# ruff: noqa: F811  (the tests take the `browser` fixture imported from test_web)
"""The last gaps of the web UI (issue 24), each through the page in Debian's Chromium
against a real server and agents: the run list read on a phone, a retried
execution's timeline row read whole, running bars that grow between updates,
and a branch's running re-run kept out of the production run's state (S78)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from conftest import Workspace
from test_web import browser  # noqa: F401  (the fixture, used by name)
from test_web_ui import _axe, _shots

NIGHTLY = """
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task(retries=1)
    def upload_results(marker: str) -> str:
        if not Path(marker).exists():
            Path(marker).touch()
            raise ConnectionError("storage timed out")
        return "uploaded"

    @cf.task()
    def summarise(gate: str) -> str:
        while GATED and not Path(gate).exists():  # the test opens the gate
            time.sleep(0.02)
        return "summary"

    @cf.workflow()
    def nightly(marker: str, gate: str) -> list:
        return [upload_results(marker), summarise(gate)]

    GATED = False
"""


def _nightly(workspace: Workspace, tmp_path: Path) -> str:
    workspace.write("flows.py", NIGHTLY)
    workspace.start_agent("flows.py")
    out = workspace.cli(
        "submit",
        "flows.py",
        "nightly",
        f'"{tmp_path / "marker"}"',
        f'"{tmp_path / "gate"}"',
        "--wait",
        check=True,
    ).stdout
    return re.search(r"/runs/([A-Z0-9]+)", out).group(1)


def _cut(page, selector: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Texts of the elements that draw less than their content (cut, or an ellipsis)."""
    return page.evaluate(
        f"[...document.querySelectorAll({selector!r})]"
        ".filter(e => e.scrollWidth > e.clientWidth || e.scrollHeight > e.clientHeight + 1)"
        ".map(e => e.textContent)"
    )


def test_the_run_list_and_a_retried_row_read_whole_on_a_phone(
    workspace: Workspace, browser, tmp_path: Path
) -> None:
    run_id = _nightly(workspace, tmp_path)
    base = f"{workspace.server}/projects/{workspace.project}"
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{base}?env=production")
    # Each run a card, each field named beside its value.
    row = page.locator("table.runs tbody tr")
    labels = row.locator("td").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before').content)"
    )
    assert labels == ['"Run"', '"Workflow"', '"State"', '"Started (UTC)"', '"Duration"']
    assert row.evaluate("r => getComputedStyle(r).display") == "block"
    # The label and its value side by side, not on top of each other.
    state = row.locator("td[data-label=State]")
    badge = state.locator(".state").bounding_box()
    assert badge["x"] - state.bounding_box()["x"] >= 90
    assert row.locator("td[data-label=Run]").inner_text() == run_id
    assert _axe(page) == []
    _shots(page, "finish-run-list")

    # The run's graph starts fitted to the phone's width.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/runs/{run_id}?env=production")
    view = page.locator(".graph-view")
    assert view.evaluate("v => v.scrollWidth <= v.clientWidth && v.clientWidth < 390")

    # The retried task's rows, named whole at 1280 and at 390 px.
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{base}/runs/{run_id}?env=production")
        names = page.locator(".timeline .row .name").all_inner_texts()
        assert names == [
            "1. nightly",
            "2. upload_results",
            "2. upload_results (attempt 2)",
            "3. summarise",
        ]
        assert _cut(page, ".timeline .row .name") == [], width
    # The executions of the retried step, as cards too.
    page.goto(f"{base}/runs/{run_id}?env=production&step=2")
    cells = page.locator(f'tr.execution[data-execution="{run_id}:2:1"] td')
    assert cells.evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before').content)"
    ) == ['"Execution"', '"Environment"', '"State"', '"Outcome"']
    assert _axe(page) == []
    _shots(page, "finish-retried-step")


def _wait_started(workspace: Workspace, run_id: str, step: int, attempt: int) -> None:
    client = workspace.client()
    try:
        for _ in range(1000):
            steps = client.get_run(run_id)["steps"]
            found = [
                e
                for s in steps
                if s["id"] == f"{run_id}:{step}"
                for e in s["executions"]
                if e["id"] == f"{run_id}:{step}:{attempt}"
            ]
            if found and found[0]["started_at"]:
                return
            time.sleep(0.02)
    finally:
        client.close()
    raise AssertionError(f"{run_id}:{step}:{attempt} never started")


def test_s78_a_branch_rerun_running_leaves_the_production_run_finished(
    workspace: Workspace, browser, tmp_path: Path
) -> None:
    workspace.cli("envs", "create", "feature", "--base", "production", check=True)
    run_id = _nightly(workspace, tmp_path)
    base = f"{workspace.server}/projects/{workspace.project}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}?env=production")
    took = page.locator("table.runs tbody tr .duration").inner_text()
    # The branch's code waits at a gate: its re-run of `summarise` keeps running.
    workspace.write("flows.py", NIGHTLY.replace("GATED = False", "GATED = True"))
    workspace.env["COFLUX_ENV"] = "feature"
    workspace.start_agent("flows.py", wait=False)
    workspace.wait_for_agents(2)
    workspace.cli("rerun", f"{run_id}:3", check=True)
    _wait_started(workspace, run_id, 3, 2)

    # Production: the run as production ran it, finished, with its own duration.
    page.goto(f"{base}?env=production")
    row = page.locator(f'table.runs tr[data-run="{run_id}"]')
    assert row.locator(".state").inner_text() == "succeeded"
    assert row.locator(".duration").inner_text() == took
    page.goto(f"{base}/runs/{run_id}?env=production")
    assert page.locator("h1 .state").inner_text() == "succeeded"
    assert page.locator("#run-body").get_attribute("data-active") == "0"
    assert page.locator(".live-note").count() == 0
    _shots(page, "finish-s78-production")
    # So do the API and the CLI (the same list, from the server).
    listed = workspace.cli_json("runs", "list", "--env", "production")
    assert [(r["id"], r["state"]) for r in listed] == [(run_id, "succeeded")]
    assert workspace.cli_json("runs", "list", "--env", "feature") == []
    # The branch: the run is running there, and so is its re-run.
    page.goto(f"{base}/runs/{run_id}?env=feature")
    assert page.locator("h1 .state").inner_text() == "running"
    assert page.locator(f'.timeline .row[data-execution="{run_id}:3:2"] .bar').get_attribute(
        "class"
    ) == ("bar assigned")
    page.goto(f"{base}?env=feature")
    rerun = page.locator(f'table.reruns tr[data-execution="{run_id}:3:2"]')
    assert rerun.locator(".state").inner_text() == "assigned"

    (tmp_path / "gate").touch()
    page.goto(f"{base}/runs/{run_id}?env=feature")
    page.wait_for_function(
        "document.querySelector('h1 .state').textContent === 'succeeded'", timeout=30000
    )
    page.goto(f"{base}?env=production")
    assert row.locator(".state").inner_text() == "succeeded"
    assert row.locator(".duration").inner_text() == took


LIVE = """
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task()
    def quiet(gate: str) -> str:
        while not Path(gate).exists():  # prints nothing: no update while it waits
            time.sleep(0.02)
        return "done"

    @cf.workflow()
    def wait_for_it(gate: str) -> str:
        return quiet(gate)
"""


def test_running_bars_grow_with_the_clock_between_updates(
    workspace: Workspace, browser, tmp_path: Path
) -> None:
    workspace.write("live.py", LIVE)
    workspace.start_agent("live.py")
    gate = tmp_path / "gate"
    out = workspace.cli("submit", "live.py", "wait_for_it", f'"{gate}"', check=True).stdout
    run_id = re.search(r"/runs/([A-Z0-9]+)", out).group(1)
    _wait_started(workspace, run_id, 2, 1)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{workspace.server}/projects/{workspace.project}/runs/{run_id}?env=production")
    page.wait_for_function("document.documentElement.getAttribute('data-live') === 'events'")
    row = f"document.querySelector('.timeline .row[data-execution=\"{run_id}:2:1\"]')"
    drawn = page.evaluate(f"{row}.querySelector('.took').textContent")
    # Nothing moves in the run (no log line, no result): the bar grows by the clock.
    page.wait_for_function(
        f"(t => t !== {drawn!r} && / s$/.test(t) && parseFloat(t.split(', ').pop()) >= 1.5)"
        f"({row}.querySelector('.took').textContent)",
        timeout=15000,
    )
    root = "document.documentElement.getAttribute"
    assert page.evaluate(f"[{root}('data-patches'), {root}('data-redraws')]") == [None, None]
    assert int(page.evaluate(f"{root}('data-ticks')")) >= 2
    assert page.evaluate(f"{root}('data-ticking')") == "1"
    title = page.evaluate(f"{row}.querySelector('.track').getAttribute('title')")
    assert re.fullmatch(rf"live:quiet {run_id}:2:1: assigned, waited .+, ran \d+\.\d\d s", title)
    gate.touch()
    page.wait_for_function(
        "document.querySelector('h1 .state').textContent === 'succeeded'", timeout=30000
    )
    # The run ended: the clock no longer moves the bars.
    page.wait_for_function(f"{root}('data-ticking') === '0'", timeout=5000)
