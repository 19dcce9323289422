"""Re-runs never return what the checked-out code would not compute.

Real git repositories, a real server and real agents: a production run, then
edits on a branch of the kinds the hash once missed (a module constant, an
instance's method, a cached task, a helper outside the project folder), and
``coflux rerun`` in the branch. What executed is counted by the tasks' side
effects; every result is compared with what the edited code computes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess, Workspace, commit_all, git, git_workspace

FLOWS = """
    import coflux as cf
    import helpers
    from helpers import SCALE

    def note(name):
        with open(helpers.JOURNAL, "a") as f:
            f.write(name + "\\n")

    @cf.task()
    def scaled(x: int) -> int:
        note("scaled")
        return x * SCALE

    @cf.task()
    def measured(x: int) -> int:
        note("measured")
        return helpers.METER.read(x)

    @cf.task(cache=True)
    def counted(x: int) -> int:
        note("counted")
        return x + 100

    @cf.task(cache=True, cache_version=1)
    def pinned(x: int) -> int:
        note("pinned")
        return x + 1000

    @cf.task()
    def plain(x: int) -> int:
        note("plain")
        return x

    @cf.workflow()
    def pipeline(x: int) -> list:
        return [scaled(x), measured(x), counted(x), pinned(x), plain(x)]
"""

HELPERS = """
    JOURNAL = {journal!r}
    SCALE = 3

    class Meter:
        def read(self, x):
            return x + 1

    METER = Meter()
"""


@pytest.fixture
def repo(server: ServerProcess, tmp_path: Path) -> Iterator[Workspace]:
    ws = git_workspace(server, tmp_path / "repo")
    yield ws
    ws.stop_agents()


def journal(path: Path) -> Counter[str]:
    counted = Counter(path.read_text().split()) if path.exists() else Counter()
    path.unlink(missing_ok=True)
    return counted


def rerun(ws: Workspace, step: str, *args: str) -> dict:
    return json.loads(ws.cli("rerun", step, "--wait", "--json", *args, check=True).stdout)


def test_a_rerun_in_a_branch_computes_what_the_edited_code_computes(
    repo: Workspace, tmp_path: Path
) -> None:
    ws, log = repo, tmp_path / "journal"
    ws.write("helpers.py", HELPERS.format(journal=str(log)))
    ws.write("flows.py", FLOWS)
    commit_all(ws.root, "pipeline")
    ws.start_agent("flows.py")
    production = ws.cli_json("submit", "flows.py", "pipeline", "2", "--wait")
    assert production["result"] == [6, 3, 102, 1002, 2]
    assert journal(log) == Counter(scaled=1, measured=1, counted=1, pinned=1, plain=1)
    run = production["id"]
    ws.stop_agents()

    # A branch edits a module constant, an instance's method, and two cached tasks.
    git(ws.root, "switch", "-q", "-c", "feat/edits")
    helpers = HELPERS.format(journal=str(log))
    ws.write("helpers.py", helpers.replace("SCALE = 3", "SCALE = 4").replace("x + 1", "x + 5"))
    ws.write("flows.py", FLOWS.replace("x + 100", "x + 200").replace("x + 1000", "x + 2000"))
    ws.start_agent("flows.py")
    edited = rerun(ws, f"{run}:1")
    # `pinned` pins cache_version: its cached result is the user's contract and
    # is reused; every other edit executes, and `plain` (unchanged) is reused.
    assert edited["result"] == [8, 7, 202, 1002, 2]
    assert journal(log) == Counter(scaled=1, measured=1, counted=1)
    states = {s["target"]: (s["state"], s["reused_from"]) for s in edited["steps"]}
    assert states["flows:pinned"] == ("cached", f"{run}:5:1")
    assert states["flows:plain"] == ("cached", f"{run}:6:1")
    assert states["flows:counted"] == ("succeeded", None)

    # Re-running the (branch's) pinned step itself always executes it, with the
    # branch's code; so does --force on the cached one.
    steps = {s["target"]: s["id"] for s in edited["steps"]}
    for target, forced, value in (("pinned", (), 2002), ("counted", ("--force",), 202)):
        named = rerun(ws, steps[f"flows:{target}"], *forced)
        assert journal(log) == Counter({target: 1})
        step = next(s for s in named["steps"] if s["target"] == f"flows:{target}")
        assert [(e["state"], e["result"]) for e in step["executions"]][-1] == ("succeeded", value)

    # Production's own step (which the branch's view no longer shows, as the
    # branch's re-run of the workflow made its own calls) executes with --force
    # and the command says it succeeded.
    hidden = ws.cli("rerun", f"{run}:4", "--force", "--wait", "--json")
    assert hidden.returncode == 0, hidden.stderr
    assert journal(log) == Counter(counted=1)

    # Cached results made by the branch's own code are reused in the branch.
    again = ws.cli_json("submit", "flows.py", "pipeline", "2", "--wait")
    assert again["result"] == [8, 7, 202, 2002, 2]
    assert journal(log) == Counter(scaled=1, measured=1, plain=1)


def test_a_helper_outside_the_project_folder_is_hashed(repo: Workspace, tmp_path: Path) -> None:
    """A monorepo: the project in `proj/`, a shared library in `libs/` of the same repository."""
    ws, log = repo, tmp_path / "journal"
    (ws.root / "libs").mkdir()
    (ws.root / "libs" / "shared.py").write_text(
        f"JOURNAL = {str(log)!r}\n\ndef exclaim(s):\n    return s + '!'\n"
    )
    project = ws.root / "proj"
    project.mkdir()
    (project / "flows.py").write_text(
        "import coflux as cf\nimport shared\n\n"
        "@cf.task()\ndef loud(s: str) -> str:\n"
        "    with open(shared.JOURNAL, 'a') as f:\n        f.write('loud\\n')\n"
        "    return shared.exclaim(s.upper())\n\n"
        "@cf.workflow()\ndef shout(s: str) -> str:\n    return loud(s)\n"
    )
    commit_all(ws.root, "monorepo")
    env = {"PYTHONPATH": str(ws.root / "libs")}
    ws.start_agent("proj/flows.py", env=env)
    production = ws.cli_json("submit", "proj/flows.py", "shout", '"hi"', "--wait")
    assert production["result"] == "HI!"
    ws.stop_agents()

    git(ws.root, "switch", "-q", "-c", "louder")
    (ws.root / "libs" / "shared.py").write_text(
        f"JOURNAL = {str(log)!r}\n\ndef exclaim(s):\n    return s + '!!'\n"
    )
    journal(log)
    ws.start_agent("proj/flows.py", env=env)
    edited = rerun(ws, f"{production['id']}:1")
    assert edited["result"] == "HI!!"
    assert journal(log) == Counter(loud=1)
