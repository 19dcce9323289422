"""The branch loop: environments from git, code hashes, incremental re-runs, `coflux dev`.

Real git repositories in temporary folders, a real server, real agents and a
real `coflux dev` process; what executed is counted by the tasks' side effects.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    ServerProcess,
    Workspace,
    commit_all,
    git,
    git_workspace,
    new_workspace,
    wait_until,
)

from coflux.local.branches import CI_BRANCH_VARIABLES, environment_for_branch

PIPELINE = """
    import coflux as cf
    import helpers

    def note(name):
        with open(helpers.JOURNAL, "a") as f:
            f.write(name + "\\n")

    @cf.task()
    def load(n: int) -> list:
        note("load")
        return list(range(n))

    @cf.task()
    def scale(xs: list) -> list:
        note("scale")
        return [x * 2 for x in xs]

    @cf.task()
    def label(n: int) -> str:
        note("label")
        return helpers.describe(n)

    @cf.task()
    def total(xs: list) -> int:
        note("total")
        return sum(xs)

    @cf.workflow()
    def pipeline(n: int) -> list:
        return [total(scale(load(n))), label(n)]
"""

HELPERS = """
    JOURNAL = {journal!r}

    def describe(n):
        return f"{{n}} items"
"""


@pytest.fixture
def repo(server: ServerProcess, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace that is a git repository on `main`, deriving its environment from git."""
    ws = git_workspace(server, tmp_path / "repo")
    yield ws
    ws.stop_agents()


def journal(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def test_branches_map_to_environments(
    server: ServerProcess, repo: Workspace, tmp_path: Path
) -> None:
    ws = repo
    ws.write("flows.py", "import coflux as cf\n\n@cf.workflow()\ndef w() -> int:\n    return 1\n")
    commit_all(ws.root, "flows")
    assert ws.cli_json("register", "flows.py")[0]["repository"] == "flows"
    envs = {e["name"]: e["base"] for e in ws.cli_json("envs", "list")}
    assert envs == {"production": None}  # main is a production branch

    git(ws.root, "switch", "-q", "-c", "feature/fast-load")
    ws.cli("register", "flows.py", check=True)
    git(ws.root, "switch", "-q", "-c", "fix#12+ünïcode")
    ws.cli("register", "flows.py", check=True)
    envs = {e["name"]: e["base"] for e in ws.cli_json("envs", "list")}
    assert envs == {
        "production": None,
        "feature/fast-load": "production",
        environment_for_branch("fix#12+ünïcode"): "production",
    }

    git(ws.root, "switch", "-q", "--detach", "HEAD")
    ws.env.update({variable: "" for variable in CI_BRANCH_VARIABLES})  # not a CI build
    detached = ws.cli("runs", "list")
    assert detached.returncode == 2
    assert detached.stderr.startswith("error: no environment given and git's HEAD is detached")
    assert detached.stderr.strip().endswith(
        "check out a branch, set COFLUX_BRANCH, or pass --env NAME, set COFLUX_ENV, "
        "or set environment in .coflux.toml"
    )
    assert ws.cli_json("runs", "list", "--env", "production") == []

    plain = new_workspace(server, tmp_path / "plain")
    plain.env["COFLUX_ENV"] = ""
    outside = plain.cli("runs", "list")
    assert outside.returncode == 2
    assert outside.stderr.strip() == (
        f"error: no environment given and {plain.root} is not in a git repository; "
        "pass --env NAME, set COFLUX_ENV, or set environment in .coflux.toml"
    )

    (ws.root / ".coflux.toml").write_text('production_branches = ["trunk"]\n')
    git(ws.root, "switch", "-q", "-c", "trunk")
    commit_all(ws.root, "trunk is production")  # production takes committed code only
    assert ws.cli_json("register", "flows.py")[0]["repository"] == "flows"
    assert "trunk" not in {e["name"] for e in ws.cli_json("envs", "list")}


def test_rerun_in_a_branch_executes_only_what_changed(
    server: ServerProcess, repo: Workspace, tmp_path: Path
) -> None:
    ws = repo
    log = tmp_path / "journal"
    ws.write("helpers.py", HELPERS.format(journal=str(log)))
    ws.write("flows.py", PIPELINE)
    commit_all(ws.root, "pipeline")
    ws.start_agent("flows.py")
    production = ws.cli_json("submit", "flows.py", "pipeline", "3", "--wait")
    assert production["result"] == [6, "3 items"]
    assert journal(log) == Counter(load=1, scale=1, total=1, label=1)
    run = production["id"]
    ws.stop_agents()

    # On a branch: `scale` changes (its output too); `label` keeps its code.
    git(ws.root, "switch", "-q", "-c", "feature/triple")
    ws.write("flows.py", PIPELINE.replace("x * 2", "x * 3"))
    ws.start_agent("flows.py")
    log.unlink()
    rerun = json.loads(
        ws.cli(
            "rerun", f"{run}:1", "--env", "feature/triple", "--wait", "--json", check=True
        ).stdout
    )
    assert rerun["result"] == [9, "3 items"]
    assert rerun["view"] == "feature/triple"
    assert rerun["url"].endswith(f"/runs/{run}?env=feature/triple")
    # The workflow (its step) and the changed task and its consumer executed;
    # `load` and `label` were reused.
    assert journal(log) == Counter(scale=1, total=1)
    steps = {s["target"]: s for s in rerun["steps"]}
    assert [s["target"] for s in rerun["steps"]] == [
        "flows:pipeline",
        "flows:load",
        "flows:scale",
        "flows:total",
        "flows:label",
    ]
    assert steps["flows:load"]["state"] == "cached"
    assert steps["flows:load"]["reused_from"] == f"{run}:2:1"
    assert steps["flows:label"]["reused_from"] == f"{run}:5:1"
    assert (steps["flows:scale"]["state"], steps["flows:scale"]["reused_from"]) == (
        "succeeded",
        None,
    )
    assert [e["environment"] for e in steps["flows:pipeline"]["executions"]] == [
        "production",
        "feature/triple",
    ]

    # Production's view of the run is as it was.
    seen = ws.cli_json("runs", "show", run, "--env", "production")
    assert seen["view"] == "production" and seen["result"] == [6, "3 items"]
    assert [(s["id"], s["state"]) for s in seen["steps"]] == [
        (f"{run}:{n}", "succeeded") for n in range(1, 6)
    ]
    assert all(len(s["executions"]) == 1 for s in seen["steps"])

    # Editing a helper that `label` uses invalidates `label`, and only it.
    ws.write("helpers.py", HELPERS.format(journal=str(log)).replace("items", "things"))
    ws.stop_agents()
    ws.start_agent("flows.py")
    log.unlink()
    again = json.loads(ws.cli("rerun", f"{run}:1", "--wait", "--json", check=True).stdout)
    assert again["result"] == [9, "3 things"]
    assert journal(log) == Counter(label=1)

    # --force executes every call again.
    log.unlink()
    forced = ws.cli("rerun", f"{run}:1", "--force", "--wait", "--json", check=True)
    assert json.loads(forced.stdout)["result"] == [9, "3 things"]
    assert journal(log) == Counter(load=1, scale=1, total=1, label=1)

    # A run is re-run only from its environment or a descendant of it.
    ws.cli("envs", "create", "elsewhere", check=True)
    refused = ws.cli("rerun", f"{run}:1", "--env", "elsewhere")
    assert refused.stderr.strip() == (
        f"error: run {run} is in environment 'production', which is not 'elsewhere' "
        "or one of its bases"
    )


def test_register_in_ci_fails_when_the_server_is_unreachable(workspace: Workspace) -> None:
    workspace.write(
        "flows.py", "import coflux as cf\n\n@cf.workflow()\ndef w() -> int:\n    return 1\n"
    )
    workspace.env["COFLUX_SERVER"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    ci = workspace.cli("register", "flows.py", "--env", "production", env_extra={"CI": "true"})
    assert ci.returncode == 2
    assert ci.stdout == ""
    assert ci.stderr.startswith("error: can't reach the Coflux server at http://127.0.0.1:9")
    # On a developer's machine it queues instead, for `coflux sync`.
    laptop = workspace.cli("register", "flows.py", "--env", "production", env_extra={"CI": ""})
    assert (laptop.returncode, laptop.stdout.strip()) == (
        0,
        "queued: server unreachable; run `coflux sync`  (register flows in production)",
    )


def test_dev_reloads_on_change_and_survives_a_syntax_error(
    server: ServerProcess, repo: Workspace, tmp_path: Path
) -> None:
    ws = repo
    log = tmp_path / "journal"
    ws.write("helpers.py", HELPERS.format(journal=str(log)))
    ws.write("flows.py", PIPELINE)
    (ws.root / ".coflux.toml").write_text('modules = ["flows.py"]\n')
    commit_all(ws.root, "pipeline")
    ws.start_agent("flows.py")
    run = ws.cli_json("submit", "flows.py", "pipeline", "2", "--wait")["id"]
    ws.stop_agents()

    git(ws.root, "switch", "-q", "-c", "dev")
    output = tmp_path / "dev.log"
    dev = ws.start_dev(output)
    try:
        wait_until(lambda: "serving flows (5 targets)" in output.read_text(), timeout=30)
        assert f"in {ws.project}/dev (branch dev)" in output.read_text()

        ws.write("flows.py", PIPELINE.replace("x * 2", "x * 3") + "    def broken(:\n")
        wait_until(lambda: "still serving the previous code" in output.read_text(), timeout=15)
        assert "SyntaxError" in output.read_text()
        first = ws.cli_json("rerun", f"{run}:1", "--wait")
        assert first["result"] == [2, "2 items"]  # the previous code served it

        ws.write("flows.py", PIPELINE.replace("x * 2", "x * 3"))
        wait_until(lambda: "changed: flows:pipeline, flows:scale" in output.read_text(), 15)
        second = ws.cli_json("rerun", f"{run}:1", "--wait")
        assert second["result"] == [3, "2 items"]
        reloads = [line for line in output.read_text().splitlines() if "reloaded in" in line]
        assert len(reloads) == 1
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(20) == 0, output.read_text()
