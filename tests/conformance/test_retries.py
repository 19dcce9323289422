"""The retries page: retries=n, (n, delay) and (n, min, max) with growing delays;
callers receive the final outcome."""

from __future__ import annotations

from .conftest import Mode, executions, seconds

PROGRAMS = ["retries"]


def test_retried_until_it_succeeds(mode: Mode) -> None:
    run = mode.run("retries", "reports", str(mode.root / "reports.journal"))
    assert run["result"] == "submitted on attempt 3"
    attempts = executions(run, "retries:submit_reports")
    assert [e["state"] for e in attempts] == ["failed", "failed", "succeeded"]
    assert attempts[0]["error"]["type"] == "ConnectionError"
    assert attempts[0]["error"]["message"] == "attempt 1 failed"


def test_at_most_retries_plus_one_attempts_then_the_caller_gets_the_error(mode: Mode) -> None:
    run = mode.run("retries", "gives_up", str(mode.root / "gives_up.journal"))
    assert run["result"] == "caller got: attempt 3 failed"
    assert [e["state"] for e in executions(run, "retries:always_fails")] == ["failed"] * 3


def test_a_retry_delay(mode: Mode) -> None:
    run = mode.run("retries", "delayed", str(mode.root / "delayed.journal"))
    assert run["result"] == "sent on attempt 3"
    attempts = executions(run, "retries:send_notification")
    for before, after in zip(attempts, attempts[1:], strict=False):
        assert seconds(after["started_at"]) - seconds(before["finished_at"]) >= 0.5


def test_backoff_grows_from_min_to_max(mode: Mode) -> None:
    run = mode.run("retries", "backoff", str(mode.root / "backoff.journal"))
    assert run["result"] == "done on attempt 4"
    attempts = executions(run, "retries:backing_off")
    gaps = [
        seconds(after["started_at"]) - seconds(before["finished_at"])
        for before, after in zip(attempts, attempts[1:], strict=False)
    ]
    assert len(gaps) == 3
    for gap, least in zip(gaps, (0.2, 0.4, 0.6), strict=True):
        assert gap >= least, gaps
