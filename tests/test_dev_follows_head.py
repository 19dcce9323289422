"""``coflux dev`` follows HEAD: a switch, a detached HEAD and a rebase, with a real dev process.

After each move, what serves each environment is checked by running it: a
branch's environment runs that branch's code (even uncommitted), and the
manifest registered in another branch's environment never changes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, Workspace, commit_all, git, git_workspace, wait_until

from coflux.local.branches import CI_BRANCH_VARIABLES

FLOW = "import coflux as cf\n\n@cf.workflow()\ndef who() -> str:\n    return {name!r}\n"


@pytest.fixture
def repo(server: ServerProcess, tmp_path: Path) -> Iterator[Workspace]:
    ws = git_workspace(server, tmp_path / "repo")
    ws.env.update({variable: "" for variable in CI_BRANCH_VARIABLES})
    yield ws
    ws.stop_agents()


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def wait_for_line(log: Path, text: str, after: int = 0, timeout: float = 20) -> int:
    """Wait until a line after the first ``after`` ones holds ``text``; return its index + 1."""

    def found() -> int | None:
        for index, line in enumerate(lines(log)[after:], start=after):
            if text in line:
                return index + 1
        return None

    return wait_until(found, timeout=timeout)


def who(ws: Workspace, env: str) -> str:
    """The run's result; dev says "serving" as its agent starts, before its hello
    has registered the code, so a submit may first find the repository unknown."""

    def submitted() -> Any:
        done = ws.cli("submit", "flows.py", "who", "--env", env, "--wait", "--json")
        if done.returncode == 2 and "is not registered" in done.stderr:
            return None
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return wait_until(submitted, timeout=15)["result"]


def code_hash(ws: Workspace, env: str) -> str:
    with ws.client() as client:
        return client.get_target(env, "flows", "who")["code_hash"]


def test_dev_moves_to_the_branch_checked_out(repo: Workspace, tmp_path: Path) -> None:
    ws, log = repo, tmp_path / "dev.log"
    ws.write("flows.py", FLOW.format(name="one"))
    (ws.root / ".coflux.toml").write_text('modules = ["flows.py"]\n')
    commit_all(ws.root, "one")
    git(ws.root, "switch", "-q", "-c", "one")
    dev = ws.start_dev(log)
    try:
        seen = wait_for_line(log, "serving flows (1 targets) in one", timeout=30)
        assert who(ws, "one") == "one"
        one = code_hash(ws, "one")

        # A new branch with the same files: no file changes, only HEAD moves.
        git(ws.root, "switch", "-q", "-c", "two")
        seen = wait_for_line(log, "branch two: serving flows (1 targets) in two", seen)
        ws.write("flows.py", FLOW.format(name="two-WIP"))  # uncommitted
        seen = wait_for_line(log, "reloaded in", seen)
        assert who(ws, "two") == "two-WIP"
        assert code_hash(ws, "one") == one  # never registered into one's environment

        # A detached HEAD has no environment: dev stops serving until a branch is back.
        git(ws.root, "stash", "-q")
        git(ws.root, "switch", "-q", "--detach", "HEAD")
        seen = wait_for_line(log, "a detached HEAD at", seen)
        assert "stopped serving" in lines(log)[seen - 1]
        # A run waiting for an agent of its environment says so on its page...
        pending = ws.cli_json("submit", "flows.py", "who", "--env", "one")
        page = httpx.get(pending["url"]).text
        assert "waiting: no agent of environment &#39;one&#39; serving flows is connected" in page
        # ...and in the CLI while it waits...
        errors = tmp_path / "submit.err"
        with open(errors, "w") as stderr:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "coflux", "submit", "flows.py", "who", "--env", "one"]
                + ["--wait", "--json"],
                cwd=ws.root,
                env=ws.environ,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        wait_until(lambda: errors.read_text(), timeout=20)
        assert errors.read_text() == (
            "waiting: no agent of environment 'one' serving flows is connected; it runs when "
            "one is (`coflux dev` on its branch, or `coflux agent MODULE --env one`)\n"
        )
        # ...and runs once the branch is checked out again.
        git(ws.root, "switch", "-q", "one")
        seen = wait_for_line(log, "branch one: serving flows (1 targets) in one", seen)
        out, _ = waiting.communicate(timeout=30)
        assert json.loads(out)["result"] == "one"
        assert who(ws, "one") == "one"
        assert code_hash(ws, "one") == one

        # Switching with changed files (a checkout writes them): the new branch's
        # code serves its own environment, and one's stays as it was.
        git(ws.root, "switch", "-q", "two")
        git(ws.root, "stash", "pop", "-q")
        commit_all(ws.root, "two")
        seen = wait_for_line(log, "branch two: serving", seen)
        wait_until(lambda: code_hash(ws, "two") != one)
        two = code_hash(ws, "two")
        git(ws.root, "switch", "-q", "one")
        seen = wait_for_line(log, "branch one: serving", seen)
        assert who(ws, "one") == "one"
        assert (code_hash(ws, "one"), code_hash(ws, "two")) == (one, two)

        # A rebase detaches HEAD while it works: dev stays on the branch.
        (ws.root / "notes.py").write_text("NOTE = 1\n")
        commit_all(ws.root, "a commit on one")
        seen = wait_for_line(log, "after notes.py", seen)
        git(ws.root, "switch", "-q", "two")
        seen = wait_for_line(log, "branch two: serving", seen)
        git(ws.root, "rebase", "-q", "one")
        assert (ws.root / "notes.py").exists()
        wait_until(lambda: who(ws, "two") == "two-WIP")
        after = lines(log)[seen:]
        assert not [line for line in after if "detached" in line or "branch " in line], after

        # While git holds its index lock (a checkout half-way), a save is not
        # registered; once git is done, it is.
        before = code_hash(ws, "two")
        lock = ws.root / ".git" / "index.lock"
        lock.write_text("")
        ws.write("flows.py", FLOW.format(name="two-later"))
        time.sleep(1.5)  # absence can only be seen by waiting: 1.5 s is 10 debounces
        assert code_hash(ws, "two") == before
        lock.unlink()
        wait_until(lambda: code_hash(ws, "two") != before)
        assert who(ws, "two") == "two-later"
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(30) == 0, log.read_text()


def test_dev_reloads_when_an_installed_package_is_upgraded(repo: Workspace, tmp_path: Path) -> None:
    ws, log = repo, tmp_path / "dev.log"
    site = tmp_path / "site" / "site-packages"
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("def value():\n    return 1\n")
    info = site / "fakepkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fakepkg\n")
    ws.env["PYTHONPATH"] = str(site)
    ws.write(
        "flows.py",
        "import coflux as cf\nimport fakepkg\n\n@cf.task()\ndef use() -> int:\n"
        "    return fakepkg.value()\n\n@cf.workflow()\ndef w() -> int:\n    return use()\n",
    )
    (ws.root / ".coflux.toml").write_text('modules = ["flows.py"]\n')
    commit_all(ws.root, "flows")
    git(ws.root, "switch", "-q", "-c", "dep")
    dev = ws.start_dev(log)
    try:
        seen = wait_for_line(log, "serving flows (2 targets) in dep", timeout=30)
        run = ws.cli_json("submit", "flows.py", "w", "--wait")
        assert run["result"] == 1
        # `pip install -U fakepkg`, as it changes the folder: new code, a renamed dist-info.
        (site / "fakepkg" / "__init__.py").write_text("def value():\n    return 2\n")
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.1\n")
        info.rename(site / "fakepkg-1.1.dist-info")
        seen = wait_for_line(
            log, "after installing fakepkg-1.1 (changed: flows:use, flows:w)", seen
        )
        rerun = json.loads(ws.cli("rerun", f"{run['id']}:1", "--wait", "--json", check=True).stdout)
        assert rerun["result"] == 2
        # `use` executed again (its hash changed with the version), not reused.
        # (Both of w's executions are in `dep`, so the view shows both calls.)
        uses = [s for s in rerun["steps"] if s["target"] == "flows:use"]
        assert [(s["state"], s["reused_from"], s["executions"][-1]["result"]) for s in uses] == [
            ("succeeded", None, 1),
            ("succeeded", None, 2),
        ]
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(30) == 0, log.read_text()


def test_dev_watches_the_whole_repository(repo: Workspace, tmp_path: Path) -> None:
    """A monorepo: dev started in the project's folder reloads on a shared helper's edit."""
    ws, log = repo, tmp_path / "dev.log"
    (ws.root / "libs").mkdir()
    (ws.root / "libs" / "shared.py").write_text("def tag(s):\n    return s + '!'\n")
    project = ws.root / "proj"
    project.mkdir()
    (project / ".coflux.toml").write_text('modules = ["flows.py"]\n')
    (project / "flows.py").write_text(
        "import coflux as cf\nimport shared\n\n@cf.workflow()\ndef who() -> str:\n"
        "    return shared.tag('proj')\n"
    )
    commit_all(ws.root, "monorepo")
    git(ws.root, "switch", "-q", "-c", "mono")
    inside = Workspace(project, ws.server, ws.project, env=dict(ws.env))
    inside.env["PYTHONPATH"] = str(ws.root / "libs")
    dev = inside.start_dev(log)
    try:
        seen = wait_for_line(log, "serving flows (1 targets) in mono", timeout=30)
        assert f"Watching {ws.root} for changes" in log.read_text()
        (ws.root / "libs" / "shared.py").write_text("def tag(s):\n    return s + '?'\n")
        wait_for_line(log, "after libs/shared.py (changed: flows:who)", seen)
        assert inside.cli_json("submit", "flows.py", "who", "--wait")["result"] == "proj?"
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(30) == 0, log.read_text()
