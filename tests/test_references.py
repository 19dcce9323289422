"""S77: references are parsed once where they arrive, and never cut short.

A run, a step or an execution named in a route's path is parsed by the
route's dependency (``coflux.remote.server.deps``): what names nothing, or
names a step where a run ID goes, answers 404 with one line saying why, and
changes nothing (``/runs/RUN:1/cancel`` once cancelled the whole run, the
``:1`` dropped). The CLI parses what the user typed once, and a typo is one
line with exit code 2. Against a real server; the run has no agent, so its
first execution stays queued.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import Workspace
from markupsafe import escape

from coflux.errors import InvalidInput
from coflux.records.references import ExecutionRef, StepRef, parse_step_ref, run_or_step

FLOWS = """
    import coflux as cf

    @cf.workflow()
    def greet(name: str) -> str:
        return f"Hello, {name}!"
"""


@pytest.fixture
def run(workspace: Workspace) -> str:
    workspace.write("flows.py", FLOWS)
    workspace.cli("register", "flows.py", check=True)
    return workspace.cli_json("submit", "flows.py", "greet", "Joe")["id"]


def _executions(workspace: Workspace, run: str) -> list[tuple[str, str]]:
    with workspace.client() as client:
        steps = client.get_run(run)["steps"]
    return [(e["id"], e["state"]) for s in steps for e in s["executions"]]


def _refused(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


def test_s77_a_malformed_or_deeper_reference_in_a_path_is_refused_and_changes_nothing(
    workspace: Workspace, run: str
) -> None:
    api = f"{workspace.server}/api/projects/{workspace.project}/runs"
    before = _executions(workspace, run)
    assert before == [(f"{run}:1:1", "queued")]
    malformed = (
        "no run 'nope': a run ID is 10 characters of 0-9 and A-Z "
        "without I, L, O or U (e.g. 7K2QF9XH3M)"
    )
    with httpx.Client() as http:
        assert _refused(http.get(f"{api}/nope")) == (
            404,
            {"detail": malformed, "code": "not_found"},
        )
        assert _refused(http.get(f"{api}/nope/logs")) == (
            404,
            {"detail": malformed, "code": "not_found"},
        )
        # A step where the run ID goes: refused, not read as the whole run.
        assert _refused(http.post(f"{api}/{run}:1/cancel", json={})) == (
            404,
            {
                "detail": f"'{run}:1' is a step, not a run: "
                f"the path takes the run ID alone ({run})",
                "code": "not_found",
            },
        )
        # A step's path with an execution where its run ID goes.
        rerun = {"environment": "production"}
        assert _refused(http.post(f"{api}/{run}:1:1/steps/1/rerun", json=rerun)) == (
            404,
            {
                "detail": f"'{run}:1:1' is an execution, not a run: "
                f"the path takes the run ID alone ({run})",
                "code": "not_found",
            },
        )
        # The step itself must be a number: an attempt after it is refused too.
        assert _refused(http.post(f"{api}/{run}/steps/1:1/rerun", json=rerun)) == (
            422,
            {
                "detail": "path.step: Input should be a valid integer, "
                "unable to parse string as an integer",
                "code": "invalid",
            },
        )
        assert _executions(workspace, run) == before  # nothing cancelled, nothing re-run

        # A page URL answers the same refusal as a page.
        page = http.get(f"{workspace.server}/projects/{workspace.project}/runs/nope")
        assert (page.status_code, page.headers["content-type"][:9]) == (404, "text/html")
        assert str(escape(malformed)) in page.text  # as the page escapes it

        # What the dependency parses reaches the handler typed: any case, and a
        # step path re-runs that step.
        shown = http.get(f"{api}/{run.lower()}")
        assert (shown.status_code, shown.json()["id"]) == (200, run)
        made = http.post(f"{api}/{run}/steps/1/rerun", json=rerun)
        assert (made.status_code, made.json()["execution_id"]) == (201, f"{run}:1:2")
    assert _executions(workspace, run) == [(f"{run}:1:1", "queued"), (f"{run}:1:2", "queued")]


def test_s77_the_cli_parses_a_reference_once_and_a_typo_is_one_line(
    workspace: Workspace, run: str
) -> None:
    def refused(*args: str) -> str:
        result = workspace.cli(*args)
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert "Traceback" not in result.stderr
        [line] = result.stderr.strip().splitlines()
        return line

    bad = (
        "error: invalid reference 'nope': expected a run (e.g. 7K2QF9XH3M), "
        "a step (7K2QF9XH3M:2) or an execution (7K2QF9XH3M:2:1)"
    )
    assert refused("rerun", run) == f"error: '{run}' is a run; name a step, e.g. {run}:1"
    assert refused("rerun", "nope") == bad
    assert refused("cancel", "nope") == bad
    assert refused("logs", "nope") == bad
    assert refused("assets", "list", "nope") == bad
    assert refused("runs", "diff", "nope", "--env", "production", "--env", "production") == bad
    assert _executions(workspace, run) == [(f"{run}:1:1", "queued")]

    # An execution names its step: it re-runs (and cancels) that step, typed to the URL.
    again = workspace.cli_json("rerun", f"{run}:1:1")
    assert again["execution_id"] == f"{run}:1:2"
    assert workspace.cli_json("cancel", f"{run}:1") == {"cancelled": 2}
    assert _executions(workspace, run) == [
        (f"{run}:1:1", "cancelled"),
        (f"{run}:1:2", "cancelled"),
    ]
    # The run's own page-less commands take a step and read its run.
    assert workspace.cli_json("assets", "list", f"{run}:1") == []


def test_references_parse_into_what_they_name() -> None:
    assert run_or_step("7k2qf9xh3m") == "7K2QF9XH3M"
    assert run_or_step("7K2QF9XH3M:3") == StepRef("7K2QF9XH3M", 3)
    assert run_or_step("7K2QF9XH3M:3:2") == StepRef("7K2QF9XH3M", 3)
    assert parse_step_ref("7K2QF9XH3M:3:2") == StepRef("7K2QF9XH3M", 3)
    assert StepRef("7K2QF9XH3M", 3).execution(2) == ExecutionRef("7K2QF9XH3M", 3, 2)
    with pytest.raises(
        InvalidInput, match=r"^'7K2QF9XH3M' is a run; name a step, e.g. 7K2QF9XH3M:1$"
    ):
        parse_step_ref("7K2QF9XH3M")
