"""The memoising page: memo=True shares one step within a run; memo=[names]
considers only those parameters."""

from __future__ import annotations

from .conftest import Mode, executions

PROGRAMS = ["memoising"]


def test_a_memoised_task_runs_once_per_run(mode: Mode) -> None:
    journal = mode.root / "notify.journal"
    run = mode.run("memoising", "notify", 5, str(journal))
    assert run["result"] == ["mailed user5@example.com", "notified user5@example.com"]
    assert len(executions(run, "memoising:fetch_user")) == 1
    assert journal.read_text().splitlines() == ["user 5"]
    # Memoising is within a run: another run fetches again.
    mode.run("memoising", "notify", 5, str(journal))
    assert journal.read_text().splitlines() == ["user 5", "user 5"]


def test_memo_parameters(mode: Mode) -> None:
    journal = mode.root / "configure.journal"
    run = mode.run("memoising", "configure", str(journal))
    assert run["result"] == ["m1 has size 1", "m1 has size 1", "m2 has size 3"]
    assert journal.read_text().splitlines() == ["configured m1 with 1", "configured m2 with 3"]
