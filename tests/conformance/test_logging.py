"""The logging page: a template and values (shown alongside when not in the
template), levels, captured output, and an execution as a value."""

from __future__ import annotations

from .conftest import Mode, step

PROGRAMS = ["logging_page"]


def test_messages_values_and_output(mode: Mode) -> None:
    run = mode.run("logging_page", "sing")
    assert run["result"] == "99 bottles"
    bottles = step(run, "logging_page:bottles")["executions"][0]["id"]
    logs = mode.logs(run["id"])
    shown = [(m["level"], m["template"], m["values"]) for m in logs]
    assert shown == [
        (
            "info",
            "{count} bottles of {drink} on the wall",
            {"count": 99, "drink": "beer", "sunny": True, "temperature": 12.3},
        ),
        ("warning", "running low", {}),
        ("stdout", "printed to stdout", {}),
        ("stderr", "printed to stderr", {}),
        (
            "debug",
            "counting with {execution}",
            {
                "execution": {
                    "$type": "coflux.Execution",
                    "repr": f"Execution({bottles!r})",
                    "id": bottles,
                }
            },
        ),
    ]
    assert logs[0]["message"].startswith("99 bottles of beer on the wall")
