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


def test_the_branch_read_from_files_is_gitpythons_in_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read commands take the branch from .git/HEAD (no gitpython import); every layout
    gives gitpython's answer, and the unusual ones are left to gitpython itself."""
    from coflux.errors import ConfigError
    from coflux.local import branches

    for variable in CI_BRANCH_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    def both(root: Path) -> str | None:
        fast, slow = branches.current_branch(root), branches._branch_from_gitpython(root)
        assert fast == slow, root
        return fast

    outside = tmp_path / "outside"
    outside.mkdir()
    assert branches._branch_from_files(outside) is None
    assert both(outside) is None
    assert both(tmp_path / "missing") is None

    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    # An unborn branch (no commit yet) is still the branch.
    assert branches._branch_from_files(root) == "main"
    assert both(root) == "main"
    git(
        root,
        "-c",
        "user.name=d",
        "-c",
        "user.email=d@d",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    (root / "sub" / "deeper").mkdir(parents=True)
    assert both(root / "sub" / "deeper") == "main"
    git(root, "switch", "-q", "-c", "feature/ünï-code")
    assert branches._branch_from_files(root) == "feature/ünï-code"
    assert both(root) == "feature/ünï-code"

    # A worktree's .git file names its own git folder.
    other = tmp_path / "other"
    git(root, "worktree", "add", "-q", "-b", "feat+x", str(other), "main")
    assert (other / ".git").is_file()
    assert branches._branch_from_files(other) == "feat+x"
    assert both(other) == "feat+x"
    assert both(root) == "feature/ünï-code"

    # Detached: the CI variables, else gitpython's error, the same either way.
    git(other, "switch", "-q", "--detach", "HEAD")
    assert branches._branch_from_files(other) is branches._DETACHED
    with pytest.raises(ConfigError) as fast_error:
        branches.current_branch(other)
    with pytest.raises(ConfigError) as slow_error:
        branches._branch_from_gitpython(other)
    assert str(fast_error.value) == str(slow_error.value)
    assert "HEAD is detached in" in str(fast_error.value)
    monkeypatch.setenv("GITHUB_REF_NAME", "feat/ci")
    assert both(other) == "feat/ci"
    monkeypatch.delenv("GITHUB_REF_NAME")

    # A bare repository, and HEAD naming something other than a branch: gitpython's.
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "trunk", str(bare))
    with pytest.raises(branches._Unusual):
        branches._branch_from_files(bare)
    assert both(bare) == "trunk"
