"""Execution and run states, and which target types start runs (docs/state-machine.md)."""

from __future__ import annotations

from typing import Literal

ExecutionState = Literal[
    "queued",
    "assigned",
    "succeeded",
    "failed",
    "abandoned",
    "cancelled",
    "suspended",
    "cached",
    "deferred",
    "spawned",
]
#: States after which an execution never changes again.
TERMINAL_STATES: frozenset[str] = frozenset(
    {"succeeded", "failed", "abandoned", "cancelled", "suspended", "cached", "deferred", "spawned"}
)
#: The transitions an execution may make, the one place they are decided.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"assigned", "cached", "deferred", "cancelled", "spawned"}),
    "assigned": frozenset({"succeeded", "failed", "abandoned", "cancelled", "suspended", "queued"}),
}
RunState = Literal["running", "succeeded", "failed", "cancelled"]


def run_state_of(execution_state: str) -> RunState:
    """The state of a run, from the state of its initial step's latest execution."""
    if execution_state in ("succeeded", "cached"):
        return "succeeded"
    if execution_state in ("failed", "abandoned"):
        return "failed"
    if execution_state == "cancelled":
        return "cancelled"
    return "running"


TargetType = Literal["workflow", "task", "sensor"]
#: Targets a run can be started from (a sensor's run keeps it running).
RUNNABLE_TYPES = ("workflow", "sensor")
