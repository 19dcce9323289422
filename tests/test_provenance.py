"""Provenance: registrations and executions carry their commit; production refuses dirty code.

Real git repositories, a real server and real agents.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import (
    ServerProcess,
    Workspace,
    commit_all,
    git,
    git_workspace,
    new_workspace,
    one_line_error,
)

from coflux.local.branches import CI_BRANCH_VARIABLES

FLOW = "import coflux as cf\n\n@cf.workflow()\ndef who() -> str:\n    return {name!r}\n"


@pytest.fixture
def repo(server: ServerProcess, tmp_path: Path) -> Iterator[Workspace]:
    ws = git_workspace(server, tmp_path / "repo")
    ws.env.update({variable: "" for variable in CI_BRANCH_VARIABLES})
    yield ws
    ws.stop_agents()


def test_registering_into_production_needs_clean_reviewed_code(repo: Workspace) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="v1"))
    commit_all(ws.root, "v1")
    head = git(ws.root, "rev-parse", "HEAD")
    clean = ws.cli_json("register", "flows.py")
    assert clean == [{"repository": "flows", "targets": ["who"], "commit": head, "dirty": False}]

    # An uncommitted edit on main: refused, unless asked for.
    ws.write("flows.py", FLOW.format(name="v2-WIP"))
    refused = ws.cli("register", "flows.py")
    one_line_error(refused, "refusing to register into 'production' from a working tree")
    assert refused.stderr.strip() == (
        "error: refusing to register into 'production' from a working tree with uncommitted "
        "changes (flows.py); commit them, or pass --allow-dirty to register them anyway"
    )
    dirty = ws.cli_json("register", "flows.py", "--allow-dirty")
    assert dirty[0]["commit"] == head and dirty[0]["dirty"] is True

    # From a feature branch, production only when named on the command line.
    git(ws.root, "stash", "-q")
    git(ws.root, "switch", "-q", "-c", "feat/x")
    refused = ws.cli("register", "flows.py", env_extra={"COFLUX_ENV": "production"})
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: refusing to register into 'production' from branch 'feat/x', which is not a "
        "production branch (main, master); pass --env production to mean it"
    )
    named = ws.cli_json("register", "flows.py", "--env", "production")
    assert named[0]["repository"] == "flows"
    # The branch's own environment takes its dirty code as it is (that is the dev loop).
    ws.write("flows.py", FLOW.format(name="feat-WIP"))
    assert ws.cli_json("register", "flows.py")[0]["dirty"] is True

    # A detached CI checkout of main registers; of anything else, not without --env.
    commit_all(ws.root, "feat")
    git(ws.root, "switch", "-q", "--detach", "main")
    ci = ws.cli("register", "flows.py", "--json", env_extra={"GITHUB_REF_NAME": "main"})
    assert json.loads(ci.stdout)[0]["commit"] == head
    unnamed = ws.cli("register", "flows.py", env_extra={"COFLUX_ENV": "production"})
    assert "from a detached HEAD, which is not a production branch" in unnamed.stderr


def test_what_tools_leave_beside_the_code_is_not_an_uncommitted_change(
    server: ServerProcess, tmp_path: Path
) -> None:
    # A new user's repository: no .gitignore, a virtual environment in the folder.
    ws = new_workspace(server, tmp_path / "repo")
    ws.env.update({"COFLUX_ENV": "", **{variable: "" for variable in CI_BRANCH_VARIABLES}})
    git(ws.root, "init", "-q", "-b", "main")
    git(ws.root, "config", "user.email", "dev@example.com")
    git(ws.root, "config", "user.name", "Dev")
    ws.write("flows.py", FLOW.format(name="v1"))
    commit_all(ws.root, "v1")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", ws.root / ".venv"], check=True)
    # Python leaves __pycache__ (as running the module or its tests would).
    subprocess.run([sys.executable, "-m", "compileall", "-q", ws.root / "flows.py"], check=True)
    first = ws.cli_json("register", "flows.py")  # the first command makes .coflux
    assert (ws.root / "__pycache__").is_dir() and (ws.root / ".coflux").is_dir()
    again = ws.cli_json("register", "flows.py")
    assert [first[0]["dirty"], again[0]["dirty"]] == [False, False]
    # The workspace keeps itself out of git: only what the user made is listed.
    assert git(ws.root, "status", "--porcelain") == "?? .venv/\n?? __pycache__/"
    # A file of the user's own is a change, and the refusal names it.
    ws.write("notes.txt", "todo")
    refused = ws.cli("register", "flows.py")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: refusing to register into 'production' from a working tree with uncommitted "
        "changes (notes.txt); commit them, or pass --allow-dirty to register them anyway"
    )


def test_every_execution_shows_the_commit_of_the_code_that_ran_it(repo: Workspace) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="v1"))
    commit_all(ws.root, "v1")
    first = git(ws.root, "rev-parse", "HEAD")
    ws.start_agent("flows.py")
    run = ws.cli_json("submit", "flows.py", "who", "--wait")
    shown = ws.cli_json("runs", "show", run["id"])
    [execution] = shown["steps"][0]["executions"]
    assert (execution["commit"], execution["dirty"]) == (first, False)
    assert f'<div class="mono" title="the commit of the code that ran it">{first[:12]}</div>' in (
        httpx.get(run["url"]).text
    )
    ws.stop_agents()

    git(ws.root, "switch", "-q", "-c", "feat")
    ws.write("flows.py", FLOW.format(name="v2-WIP"))
    ws.start_agent("flows.py")
    rerun = json.loads(ws.cli("rerun", f"{run['id']}:1", "--wait", "--json", check=True).stdout)
    assert rerun["result"] == "v2-WIP"
    executions = rerun["steps"][0]["executions"]
    assert [(e["environment"], e["commit"], e["dirty"]) for e in executions] == [
        ("production", first, False),
        ("feat", first, True),
    ]


def test_commands_work_from_a_subfolder(repo: Workspace) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="root"))
    (ws.root / ".coflux.toml").write_text('modules = ["flows.py"]\n')
    (ws.root / "docs" / "deep").mkdir(parents=True)
    commit_all(ws.root, "flows")
    inside = Workspace(ws.root / "docs" / "deep", ws.server, ws.project, env=dict(ws.env))
    try:
        registered = inside.cli_json("register")
        assert [r["repository"] for r in registered] == ["flows"]
        inside.start_agent()
        assert inside.cli_json("submit", "flows.py", "who", "--wait")["result"] == "root"
        assert inside.cli_json("status")["environment"]["name"] == "production"
    finally:
        inside.stop_agents()


def test_dev_serves_a_shared_production_only_when_asked(repo: Workspace) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="v1"))
    commit_all(ws.root, "v1")
    refused = ws.cli("dev", "flows.py", timeout=30)
    one_line_error(refused)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: refusing to serve your working tree in 'production' (branch 'main') on "
        f"{ws.server}: coflux dev registers every edit; switch to a branch of your own "
        "(git switch -c NAME), or pass --allow-dirty to mean it"
    )


def test_an_agent_registers_into_production_by_the_rule_register_keeps(repo: Workspace) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="v1"))
    commit_all(ws.root, "v1")
    head = git(ws.root, "rev-parse", "HEAD")
    ws.write("flows.py", FLOW.format(name="v2-WIP"))
    refused = ws.cli("agent", "flows.py")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: refusing to register into 'production' from a working tree with uncommitted "
        "changes (flows.py); commit them, or pass --allow-dirty to register them anyway"
    )
    assert ws.cli_json("envs", "manifests") == []  # nothing was registered

    # Asked for: the dirty tree serves, and its registration says so.
    ws.start_agent("flows.py", args=("--allow-dirty",))
    assert ws.cli_json("submit", "flows.py", "who", "--wait")["result"] == "v2-WIP"
    [registered] = ws.cli_json("envs", "manifests")
    assert (registered["commit"], registered["dirty"]) == (head, True)
    ws.stop_agents()

    # From a feature branch, production only when named on the command line.
    git(ws.root, "stash", "-q")
    git(ws.root, "switch", "-q", "-c", "feat/y")
    refused = ws.cli("agent", "flows.py", env_extra={"COFLUX_ENV": "production"})
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: refusing to register into 'production' from branch 'feat/y', which is not a "
        "production branch (main, master); pass --env production to mean it"
    )
    ws.start_agent("flows.py", args=("--env", "production"))
    assert (
        ws.cli_json("submit", "flows.py", "who", "--env", "production", "--wait")["result"] == "v1"
    )
    [registered] = ws.cli_json("envs", "manifests", "production")
    assert (registered["commit"], registered["dirty"]) == (head, False)


def test_every_registration_reads_back_with_its_commit(repo: Workspace) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="v1"))
    commit_all(ws.root, "v1")
    head = git(ws.root, "rev-parse", "HEAD")
    before = datetime.now(UTC)
    ws.cli("register", "flows.py", check=True)
    after = datetime.now(UTC)
    [production] = ws.cli_json("envs", "manifests")
    registered_at = datetime.fromisoformat(production.pop("registered_at"))
    assert before <= registered_at <= after
    assert production == {
        "repository": "flows",
        "environment": "production",
        "targets": ["who"],
        "commit": head,
        "dirty": False,
    }

    # A branch serves production's registration until it registers its own.
    git(ws.root, "switch", "-q", "-c", "feat")
    [inherited] = ws.cli_json("envs", "manifests")
    assert (inherited["environment"], inherited["commit"]) == ("production", head)
    ws.write("flows.py", FLOW.format(name="feat-WIP"))
    ws.cli("register", "flows.py", check=True)
    [own] = ws.cli_json("envs", "manifests", "feat")
    assert (own["environment"], own["commit"], own["dirty"]) == ("feat", head, True)
    lines = ws.cli("envs", "manifests", check=True).stdout.splitlines()
    at = own["registered_at"][:19].replace("T", " ")
    assert lines == [f"flows: {head[:12]} (dirty tree), registered {at} UTC: who"]
    page = httpx.get(f"{ws.server}/projects/{ws.project}?env=feat").text
    assert (
        f'<span class="mono" title="the commit it was registered from">{head[:12]} (dirty tree)'
        "</span>"
    ) in page

    # Through the API as it is documented; an unknown environment is a 404, not a 500.
    api = httpx.get(
        f"{ws.server}/api/projects/{ws.project}/manifests", params={"environment": "production"}
    )
    assert api.status_code == 200 and api.json()[0]["commit"] == head
    missing = httpx.get(
        f"{ws.server}/api/projects/{ws.project}/manifests", params={"environment": "nope"}
    )
    assert missing.status_code == 404
