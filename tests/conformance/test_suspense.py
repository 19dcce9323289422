"""The suspense page: explicit cf.suspend (seconds, timedelta, datetime) and a
suspense(timeout) block; each suspended execution starts again from the top."""

from __future__ import annotations

import pytest

from .conftest import Mode, executions

PROGRAMS = ["suspense"]


@pytest.mark.parametrize("kind", ["seconds", "timedelta", "datetime"])
def test_explicit_suspend(mode: Mode, kind: str) -> None:
    run = mode.run("suspense", "until_ready", str(mode.root / f"{kind}.journal"), kind)
    assert run["result"] == "ready on call 3"
    states = [e["state"] for e in executions(run, "suspense:until_ready")]
    assert states == ["suspended", "suspended", "succeeded"]


def test_a_suspense_timeout_suspends_and_resumes_when_the_result_is_ready(mode: Mode) -> None:
    run = mode.run("suspense", "order", 1, 2)
    assert run["result"] == {"user": 1, "product": 2}
    states = [e["state"] for e in executions(run, "suspense:create_order")]
    assert states == ["suspended", "succeeded"]


def test_suspense_none_waits_without_a_timeout(mode: Mode) -> None:
    run = mode.run("suspense", "no_timeout", 4)
    assert run["result"] == {"user": 4}
    assert [e["state"] for e in executions(run, "suspense:patient")] == ["succeeded"]
