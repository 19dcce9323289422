"""Branch → environment: every branch gets a valid environment, and no two branches share one.

The corpus is checked against the real server (which refuses invalid names),
then two branches whose names sanitise alike run their own code side by side,
from two git worktrees, and a detached CI checkout takes its branch from the
CI system's variables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess, Workspace, commit_all, git, git_workspace

from coflux.local.branches import CI_BRANCH_VARIABLES, environment_for_branch
from coflux.records.names import validate_environment_name

CORPUS = [
    "main-ish",
    "feature/fast-load",
    "feature/ünï-code",
    "feature/uni-code",
    "日本語",
    "renovate/@types-node-20.x",
    "feat/_wip",
    "feat/wip",
    "user/-x",
    "user/x",
    "feat+x",
    "feat-x",
    "_x",
    "x",
    "b_x",
    "fix#12",
    "fix@12",
    "fix-12",
    "Feature",
    "feature",
    "a" * 200,
    "a" * 100 + "b",
    "a" * 100 + "c",
    "a" * 100,
    "x/./y",
    "x/y",
    "release/1.2",
    "dependabot/npm_and_yarn/lodash-4.17.21",
    "wip!",
    "wip?",
    "tab\tname",
    "-",
    "a/b/c/d/e",
]


@pytest.fixture
def repo(server: ServerProcess, tmp_path: Path) -> Iterator[Workspace]:
    ws = git_workspace(server, tmp_path / "repo")
    ws.env.update({variable: "" for variable in CI_BRANCH_VARIABLES})
    yield ws
    ws.stop_agents()


def test_every_branch_maps_to_a_valid_environment_of_its_own(repo: Workspace) -> None:
    names = {branch: environment_for_branch(branch) for branch in CORPUS}
    assert len(set(names.values())) == len(CORPUS)
    for name in names.values():
        assert validate_environment_name(name) == name
        assert len(name) <= 100
    # Valid names stay as they are; the others keep what they can and add a
    # hash of the branch's name.
    assert names["feature/fast-load"] == "feature/fast-load"
    assert (names["Feature"], names["feature"]) == ("Feature", "feature")
    assert names["a" * 100] == "a" * 100
    digest = hashlib.sha256(b"feat+x").hexdigest()[:12]
    assert names["feat+x"] == f"feat-x..{digest}"
    assert names["feature/ünï-code"].startswith("feature/uni-code..")
    assert names["renovate/@types-node-20.x"].startswith("renovate/types-node-20.x..")
    assert names["a" * 200] == "a" * 86 + ".." + hashlib.sha256(b"a" * 200).hexdigest()[:12]
    # The same branch always maps to the same environment.
    assert all(environment_for_branch(b) == n for b, n in names.items())

    # The server takes every one of them, as distinct environments.
    with repo.client() as client:
        for name in names.values():
            client.create_environment(name, base="production")
        listed = {e["name"] for e in client.list_environments()}
    assert listed == {"production", *names.values()}


FLOW = "import coflux as cf\n\n@cf.workflow()\ndef who() -> str:\n    return {name!r}\n"


def test_branches_that_sanitise_alike_run_their_own_code(repo: Workspace, tmp_path: Path) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="main"))
    commit_all(ws.root, "flows")
    git(ws.root, "switch", "-q", "-c", "feat+x")
    ws.write("flows.py", FLOW.format(name="feat+x"))
    commit_all(ws.root, "plus")
    other = tmp_path / "other"
    git(ws.root, "worktree", "add", "-q", "-b", "feat-x", str(other), "main")
    (other / "flows.py").write_text(FLOW.format(name="feat-x"))
    commit_all(other, "minus")
    twin = Workspace(other, ws.server, ws.project, env=dict(ws.env))

    # Both branches serve at once, each from its own checkout.
    ws.start_agent("flows.py")
    twin.start_agent("flows.py")
    ws.wait_for_agents(2)
    try:
        for _ in range(3):
            assert ws.cli_json("submit", "flows.py", "who", "--wait")["result"] == "feat+x"
            assert twin.cli_json("submit", "flows.py", "who", "--wait")["result"] == "feat-x"
        status = ws.cli_json("status")["environment"]
        assert status == {
            "name": environment_for_branch("feat+x"),
            "source": "git",
            "branch": "feat+x",
            "error": None,
        }
        assert twin.cli_json("status")["environment"]["name"] == "feat-x"
    finally:
        twin.stop_agents()


def test_a_detached_ci_checkout_takes_its_branch_from_the_ci_variables(repo: Workspace) -> None:
    ws = repo
    ws.write("flows.py", FLOW.format(name="ci"))
    commit_all(ws.root, "flows")
    git(ws.root, "switch", "-q", "--detach", "HEAD")
    bare = ws.cli("status", "--json")
    assert '"error": "no environment given and git\'s HEAD is detached' in bare.stdout
    for variable, value, branch in (
        ("GITHUB_REF_NAME", "feat/ci", "feat/ci"),
        ("CI_COMMIT_REF_NAME", "feat/ci+gitlab", "feat/ci+gitlab"),
        ("BUILDKITE_BRANCH", "refs/heads/bk", "bk"),
        ("GIT_BRANCH", "origin/jenkins", "jenkins"),
        ("GITHUB_REF_NAME", "main", "main"),
    ):
        result = ws.cli("status", "--json", env_extra={variable: value})
        environment = json.loads(result.stdout)["environment"]
        expected = "production" if branch == "main" else environment_for_branch(branch)
        assert (environment["name"], environment["branch"]) == (expected, branch), variable
    registered = ws.cli(
        "register", "flows.py", "--json", env_extra={"GITHUB_REF_NAME": "feat/ci"}, check=True
    )
    assert '"repository": "flows"' in registered.stdout
    with ws.client() as client:
        assert "feat/ci" in {e["name"] for e in client.list_environments()}
