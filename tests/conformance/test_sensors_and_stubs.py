"""The sensors page (a ticker sensor that checkpoints, restarted without
submitting again) and the stubs page (a stub calling another repository's
task; its body outside Coflux).

Through a server with agents only: a sensor runs until stopped, and a stub's
target is hosted by another agent, while ``coflux run``'s embedded server
lives as long as the command and hosts the one module it runs. The stub's
body, which needs no server, is checked on its own.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from conftest import Workspace, wait_until

from .conftest import PROGRAMS as PROGRAM_DIR

PROGRAMS = ["sensors", "other_repo", "dice"]


def _journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _runs_of(ws: Workspace, workflow: str) -> list[dict]:
    return [r for r in ws.cli_json("runs", "list") if r["workflow"] == workflow]


def test_a_ticker_sensor_restarts_from_its_checkpoint(workspace: Workspace) -> None:
    journal = workspace.root / "sensor.journal"
    workspace.write("sensors.py", (PROGRAM_DIR / "sensors.py").read_text())
    workspace.start_agent("sensors.py", env={"CONFORMANCE_JOURNAL": str(journal)})
    started = workspace.cli_json("sensors", "start", "sensors.py", "ticker", "30")
    # The first tick is at once: one run of my_workflow, then a checkpoint.
    wait_until(lambda: _journal(journal)[1:], timeout=30)
    first, checkpoint = _journal(journal)[:2]
    assert first == {"event": "start", "pid": first["pid"], "last_tick": None}
    assert checkpoint == {"event": "checkpoint", "next_tick": checkpoint["next_tick"]}
    assert len(_runs_of(workspace, "sensors:my_workflow")) == 1
    # The sensor's process dies; the orchestrator starts it again from the checkpoint.
    os.kill(first["pid"], signal.SIGKILL)
    starts = wait_until(
        lambda: [e for e in _journal(journal) if e["event"] == "start"][1:], timeout=30
    )
    assert starts[0]["pid"] != first["pid"]
    assert starts[0]["last_tick"] == checkpoint["next_tick"]
    # Restarted with (interval, next_tick): its next tick is 30 s after the first,
    # so the restart submitted nothing.
    assert len(_runs_of(workspace, "sensors:my_workflow")) == 1
    workspace.cli_json("sensors", "stop", started["id"])


def test_a_stub_calls_the_other_repository(hosted_stubs: Workspace) -> None:
    listed = hosted_stubs.cli_json("submit", "dice.py", "roll_many", "20", "--wait")
    assert listed["result"] == [1]
    targets = {s["target"] for s in listed["steps"]}
    assert targets == {"dice:roll_many", "other_repo:random_int"}
    rolled = hosted_stubs.cli_json("submit", "dice.py", "roll_die", "--wait")
    assert rolled["state"] == "succeeded"
    assert rolled["result"] == "You won" or rolled["result"].startswith("You lost with ")


def test_a_stub_outside_coflux_runs_its_body() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dice_stub", PROGRAM_DIR / "dice.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.random_int(6) == 4
    assert module.roll_die() == "You lost with 4"
