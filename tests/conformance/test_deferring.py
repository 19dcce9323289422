"""The deferring page: delay= holds an execution; defer=True lets a newer call
with the same (defer_params) arguments replace a pending one."""

from __future__ import annotations

from .conftest import Mode, executions, seconds

PROGRAMS = ["deferring"]


def test_a_delayed_task(mode: Mode) -> None:
    run = mode.run("deferring", "remind", 3)
    assert run["result"] == "reminder 3"
    (execution,) = executions(run, "deferring:send_reminder")
    assert seconds(execution["started_at"]) - seconds(execution["created_at"]) >= 0.5


def test_deferred_calls_are_replaced_by_the_latest(mode: Mode) -> None:
    journal = mode.root / "debounce.journal"
    run = mode.run("deferring", "debounce", str(journal))
    assert run["result"] == ["told 1 about 7: third edit"] * 3
    states = [e["state"] for e in executions(run, "deferring:send_notification")]
    assert states == ["deferred", "deferred", "succeeded"]
    assert journal.read_text().splitlines() == ["sent third edit"]
