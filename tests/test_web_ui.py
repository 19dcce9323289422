# ruff: noqa: F811  (the tests take the `browser` fixture imported from test_web)
"""The web UI's features, each through the page in Debian's Chromium (Playwright),
against a real server and agent: values, logs, the graph, finding work, launching.
Screenshots at 1280 and 390 px go to tests/artifacts/ (kept by CI), and every
page passes axe-core (vendored in tests/vendor) with no serious violation."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from conftest import Workspace
from test_web import browser  # noqa: F401  (the fixture, used by name)

ARTIFACTS = Path(__file__).parent / "artifacts"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"

FLOWS = """
    import base64
    import coflux as cf
    from pathlib import Path

    PIXEL = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4"
        "z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
    )

    @cf.task()
    def load(n: int) -> dict:
        cf.log_info("loading {n} rows", n=n)
        cf.log_warning("slow disk")
        return {"rows": [{"id": i, "name": f"row {i}"} for i in range(n)], "n": n}

    @cf.task()
    def square(x: int) -> int:
        return x * x

    @cf.task()
    def report_file(rows: dict) -> str:
        Path("out").mkdir()
        Path("out/summary.txt").write_text(f"{rows['n']} rows\\n")
        Path("out/data.csv").write_text("id,name\\n1,a\\n")
        Path("out/img").mkdir()
        Path("out/img/pixel.png").write_bytes(base64.b64decode(PIXEL))
        Path("out/page.html").write_text("<script>alert(1)</script>")
        asset = cf.persist_asset("out")
        return "written"

    @cf.task()
    def explode(rows: dict) -> int:
        raise ValueError(f"no good: {rows['n']}")

    @cf.workflow()
    def pipeline(n: int = 30, label: str = "daily", strict: bool = False) -> dict:
        \"\"\"Load rows, square some numbers, write a report.\"\"\"
        rows = load(n)
        squares = [square.submit(i) for i in range(12)]
        report_file(rows)
        return {"rows": rows, "squares": [s.result() for s in squares], "label": label,
                "load": load.submit(2)}

    @cf.workflow()
    def broken(n: int) -> int:
        return explode(load(n))

    @cf.workflow()
    def total(first: int, *more: int) -> int:
        return first + sum(more)
"""


def _shots(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Screenshots at 1280 and 390 px (a phone), and axe-core at the phone's width
    too: what reflows there (a table, the graph, the header) is checked as drawn."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        path = ARTIFACTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5_000
    assert _axe(page) == [], f"{name} at 390 px"
    page.set_viewport_size({"width": 1280, "height": 900})


def _axe(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Serious or critical axe-core violations on the page, as ``id: target`` lines."""
    page.add_script_tag(content=AXE.read_text())
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))"
    )
    return list(found)


def _run(workspace: Workspace, *args: str) -> str:
    out = workspace.cli("submit", "flows.py", *args, "--wait", check=False).stdout
    return re.search(r"/runs/([A-Z0-9]+)", out).group(1)


@pytest.fixture
def ui(workspace: Workspace):  # type: ignore[no-untyped-def]
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    return workspace


def test_values_arguments_and_assets_read_without_json(ui: Workspace, browser, tmp_path) -> None:
    run_id = _run(ui, "pipeline")
    base = f"{ui.server}/projects/{ui.project}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/runs/{run_id}?env=production")
    # Arguments by parameter name, defaults said to be defaults (the run passed none).
    names = page.locator("tr.argument th").all_inner_texts()
    assert names == ["n: int", "label: str", "strict: bool"]
    assert page.locator("tr.argument td").all_inner_texts() == [
        "30 default",
        "'daily' default",
        "False default",
    ]
    # The result is big (a blob): a button fetches its tree, beside a raw link.
    result = page.locator(f'tr[data-execution="{run_id}:1:1"] .result')
    assert "raw JSON" in result.inner_text()
    result.get_by_role("button").click()
    tree = result.locator("details.json").first
    tree.wait_for()
    assert tree.locator("summary").first.inner_text() == "{ 4 keys"
    assert result.locator("li", has_text='"label":').last.inner_text() == '"label": "daily"'
    # An execution inside the value is a link to its step.
    link = result.locator("a.ref.execution")
    assert link.count() == 1 and link.inner_text().startswith(f"Execution {run_id}:")
    raw = result.get_by_role("link", name="raw JSON").get_attribute("href")
    assert httpx.get(f"{ui.server}{raw}").json()["label"] == "daily"
    assert _axe(page) == []
    _shots(page, "values")

    # The report step's asset: a file tree with sizes, previews and downloads.
    node = page.locator('a.node[aria-label*="flows:report_file"]')
    step = node.get_attribute("data-step").rsplit(":", 1)[1]
    page.goto(f"{base}/runs/{run_id}?env=production&step={step}")
    page.locator(".asset a").first.click()
    page.wait_for_url(re.compile(r"/assets/a:"))
    rows = page.locator("table.files-tree tbody tr")
    assert [r.strip() for r in rows.locator("td:first-child").all_inner_texts()] == [
        "img/ (1 files)",
        "pixel.png",
        "data.csv",
        "page.html",
        "summary.txt",
    ]
    assert page.locator("table.files-tree tbody tr td:nth-child(2)").all_inner_texts() == [
        "70 B",
        "70 B",
        "12 B",
        "25 B",
        "8 B",
    ]
    # The picture is shown; a page of HTML is never served to run here.
    page.wait_for_function("document.querySelector('.preview-file img').naturalWidth === 1")
    html = page.get_by_role("link", name="Open page.html").get_attribute("href")
    served = httpx.get(f"{ui.server}{html}")
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "30 rows" in page.locator(".preview-file pre").last.inner_text()
    href = page.get_by_role("link", name="Download summary.txt").get_attribute("href")
    assert httpx.get(f"{ui.server}{href}").text == "30 rows\n"
    assert _axe(page) == []
    _shots(page, "asset")


def test_logs_have_time_task_level_filters_and_tracebacks(ui: Workspace, browser) -> None:
    run_id = _run(ui, "broken", "3")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{ui.server}/projects/{ui.project}/runs/{run_id}?env=production")
    lines = page.locator(".logs .line")
    # Two failures: the task's, and the workflow's that it propagated to.
    assert lines.locator(".task").all_inner_texts() == [
        "flows:load",
        "flows:load",
        "flows:explode",
        "flows:broken",
    ]
    first = lines.nth(0)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", first.locator(".time").inner_text())
    assert first.locator(".task").inner_text() == "flows:load"
    assert first.locator(".execution").inner_text() == f"{run_id}:2:1"
    assert first.locator(".text").inner_text() == "loading 3 rows"
    failure = page.locator(".logs .line.failure").first
    assert failure.locator(".text").inner_text() == "ValueError: no good: 3"
    assert "raise ValueError" in failure.locator("pre").inner_text()
    # Filter by level: warnings and above; the page doesn't reload, the URL keeps it.
    page.evaluate("window.marker = 1")
    page.select_option("select[name=level]", "warning")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function("document.querySelectorAll('.logs .line').length === 3")
    texts = page.locator(".logs .line .text").all_inner_texts()
    assert texts[:2] == ["slow disk", "ValueError: no good: 3"] and len(texts) == 3
    assert page.evaluate("window.marker") == 1 and "level=warning" in page.url
    page.fill("input[name=grep]", "LOADING")
    page.select_option("select[name=level]", "")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function("document.querySelectorAll('.logs .line').length === 1")
    assert page.locator(".logs .line .text").inner_text() == "loading 3 rows"
    assert _axe(page) == []
    _shots(page, "logs")

    # The same filters in the terminal.
    out = ui.cli("logs", run_id, "--level", "warning", check=True).stdout
    assert "slow disk" in out and "loading" not in out
    out = ui.cli("logs", run_id, "--grep", "rows", "--step", "2", check=True).stdout
    assert out.count("loading 3 rows") == 1 and "slow disk" not in out
    assert ui.cli("logs", run_id, "--since", "1h", check=True).stdout.count("\n") == 2
    assert ui.cli("logs", run_id, "--since", "2099-01-01", check=True).stdout == ""
    bad = ui.cli("logs", run_id, "--level", "loud")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --level 'loud' is not a level")
    bad = ui.cli("logs", run_id, "--since", "yesterday")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert (
        httpx.get(
            f"{ui.server}/api/projects/{ui.project}/runs/{run_id}/logs", params={"since": "soon"}
        ).status_code
        == 422
    )


def test_the_graph_groups_a_fan_out_and_zooms(ui: Workspace, browser) -> None:
    run_id = _run(ui, "pipeline", "2")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{ui.server}/projects/{ui.project}/runs/{run_id}?env=production")
    group = page.locator("a.node.group")
    assert group.count() == 1
    assert group.get_attribute("data-summary") == (
        "Group of 12 calls of flows:square: 12 succeeded"
    )
    assert group.locator("text").all_text_contents() == [
        "flows:square × 12",
        "12 succeeded · expand",
    ]
    singles = page.locator("a.node:not(.group)")
    assert singles.count() == 4  # pipeline, load, report_file, load(2)
    page.get_by_role("button", name="Zoom in").click()
    assert page.locator(".graph-view").get_attribute("data-scale") == "1.25"
    # With the keyboard alone: Tab from the last zoom button reaches the graph,
    # "-" zooms out, and Tab then Enter opens the first step.
    page.get_by_role("button", name="Fit").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "graph-view"
    page.keyboard.press("-")
    assert page.locator(".graph-view").get_attribute("data-scale") == "1.00"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('data-step')") == f"{run_id}:1"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"step=2"))
    group = page.locator("a.node.group")
    group.click()
    page.wait_for_url(re.compile(r"expand=g\d+"))
    assert page.locator("a.node.group").count() == 0
    assert page.locator("a.node").count() == 16
    # The timeline names tasks, not execution ids.
    names = page.locator(".timeline .row .name").all_inner_texts()
    assert names[:2] == ["1. pipeline", "2. load"]
    assert [n.split(". ")[1] for n in names].count("square") == 12
    assert _axe(page) == []
    _shots(page, "graph")


def test_finding_work_and_launching_from_the_signature(ui: Workspace, browser) -> None:
    first = _run(ui, "broken", "1")
    second = _run(ui, "pipeline", "1")
    base = f"{ui.server}/projects/{ui.project}?env=production"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base)
    rows = page.locator("table.runs tbody tr")
    assert [rows.nth(i).get_attribute("data-run") for i in range(2)] == [second, first]
    assert rows.nth(1).locator(".state").inner_text() == "failed"
    assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", rows.nth(0).locator(".duration").inner_text())
    page.select_option("select[name=state]", "failed")
    page.get_by_role("button", name="Filter").first.click()
    page.wait_for_url(re.compile("state=failed"))
    assert page.locator("table.runs tbody tr").count() == 1
    page.goto(f"{base}&q={second[:5].lower()}")
    assert page.locator("table.runs tbody tr").get_attribute("data-run") == second
    page.goto(f"{base}&from=2099-01-01")
    assert page.locator("table.runs tbody tr").inner_text() == "No runs match."
    assert httpx.get(f"{base}&from=tomorrow").status_code == 422

    # Launch from the form: typed fields, defaults filled, errors beside the field.
    page.goto(base)
    form = page.locator('form.launch[data-target="pipeline"]')
    assert form.locator(".field label").all_inner_texts() == [
        "n int default 30",
        "label str default 'daily'",
        "strict bool default False",
    ]
    assert form.locator("input").first.input_value() == "30"
    form.locator("input").first.fill("many")
    form.get_by_role("button", name="Run").click()
    error = form.locator(".field-error").first
    assert error.inner_text() == "Expected a whole number, e.g. 42."
    assert form.locator("input").first.get_attribute("aria-invalid") == "true"
    assert _axe(page) == []
    _shots(page, "environment")
    form.locator("input").first.fill("3")
    form.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r"/runs/"))
    page.wait_for_function(
        "document.querySelector('h1 .state').textContent === 'succeeded'", timeout=20000
    )
    assert page.locator("tr.argument td").all_inner_texts() == [
        "3",
        "'daily' default",
        "False default",
    ]
    assert _axe(page) == []
    _shots(page, "launched-run")
    # *args: a JSON list, spread into the arguments.
    page.goto(base)
    form = page.locator('form.launch[data-target="total"]')
    form.locator("input").fill("1")
    form.locator("textarea").fill("[2, 3]")
    form.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r"/runs/"))
    page.wait_for_function(
        "document.querySelector('h1 .state').textContent === 'succeeded'", timeout=20000
    )
    assert page.locator("tr.argument th").all_inner_texts() == [
        "first: int",
        "*more[0]: int",
        "*more[1]: int",
    ]
    assert page.locator(".result").inner_text() == "6"


def test_no_agent_disables_run_buttons_with_the_reason(workspace: Workspace, browser) -> None:
    workspace.write("flows.py", FLOWS)
    workspace.cli("register", "flows.py", check=True)
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{workspace.server}/projects/{workspace.project}?env=production")
    assert page.locator("#no-agent").inner_text().startswith("No agent is connected to production")
    button = page.locator('form.launch[data-target="pipeline"] button')
    assert button.is_disabled()
    assert (
        "no connected agent of production hosts flows"
        in page.locator('form.launch[data-target="pipeline"] .warning-text').inner_text()
    )
    assert _axe(page) == []
    _shots(page, "no-agent")


DIFF_V1 = """
    import coflux as cf

    @cf.task()
    def double(x: int) -> int:
        return x * 2

    @cf.task()
    def label(x: int) -> str:
        return f"n={x}"

    @cf.workflow()
    def flow(x: int) -> list:
        return [double(x), label(x)]
"""


def test_a_branch_compared_with_production(workspace: Workspace, browser) -> None:
    workspace.write("flows.py", DIFF_V1)
    workspace.cli("envs", "create", "feature", "--base", "production", check=True)
    workspace.start_agent("flows.py")
    run_id = re.search(
        r"/runs/([A-Z0-9]+)",
        workspace.cli("submit", "flows.py", "flow", "5", "--wait", check=True).stdout,
    ).group(1)
    workspace.write("flows.py", DIFF_V1.replace("x * 2", "x * 3"))
    workspace.env["COFLUX_ENV"] = "feature"
    workspace.start_agent("flows.py", wait=False)
    workspace.wait_for_agents(2)
    workspace.cli("rerun", f"{run_id}:1", "--wait", check=True)
    result = workspace.cli_json("runs", "diff", run_id, "--env", "production", "--env", "feature")
    statuses = {s["target"]: s["status"] for s in result["steps"]}
    # The workflow's own code is unchanged: executed again (a re-run), same hash.
    assert statuses == {
        "flows:flow": "executed",
        "flows:double": "new_code",
        "flows:label": "reused",
    }
    label = next(s for s in result["steps"] if s["target"] == "flows:label")
    assert (label["differs"], label["diff"]) == (False, [])  # reused: the same result
    double = next(s for s in result["steps"] if s["target"] == "flows:double")
    assert double["diff"] == [{"path": "(value)", "a": 10, "b": 15}]
    assert double["a"]["code_hash"] != double["b"]["code_hash"]
    root = next(s for s in result["steps"] if s["target"] == "flows:flow")
    assert root["diff"] == [{"path": "[0]", "a": 10, "b": 15}]
    text = workspace.cli(
        "runs", "diff", run_id, "--env", "production", "--env", "feature", check=True
    ).stdout
    assert "new code" in text and "[0]: 10 → 15" in text
    bad = workspace.cli("runs", "diff", run_id, "--env", "production")
    assert bad.returncode == 2 and bad.stderr.startswith("error: give two environments")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{workspace.server}/projects/{workspace.project}/runs/{run_id}?env=feature")
    assert (
        page.locator("#against")
        .inner_text()
        .startswith("Against production: 1 executed, 1 new code, 1 reused; 2 result(s) differ.")
    )
    marks = page.locator("svg.graph text.mark").all_text_contents()
    assert sorted(marks) == ["executed ≠", "new code ≠", "reused"]
    page.get_by_role("link", name="compare with production").click()
    page.wait_for_url(re.compile("/compare"))
    row = page.locator('tr[data-status="reused"]')
    assert row.locator("td").first.inner_text() == "flows:label"
    changed = page.locator('tr[data-status="new_code"]', has_text="flows:double")
    assert changed.locator("del").inner_text() == "10"
    assert changed.locator("ins").inner_text() == "15"
    assert _axe(page) == []
    _shots(page, "compare")
