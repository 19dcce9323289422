"""A step's row: the one function that builds it, and the one that reads it back live.

A step is written when it is made (``ExecutionMachine.new_step``), when a run is imported,
and read back after a restart and for a re-run; its facts are exported as
they are. All of these go through here, so a new column is added in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .state import LiveStep

#: A step's columns besides its id, run and caller: the facts exported and imported
#: as they are (``number`` first: the export puts the caller's reference after it).
STEP_FACTS = (
    "number",
    "call_index",
    "repository",
    "target",
    "type",
    "arguments",
    "options",
    "cache_key",
    "memo_key",
    "code_hash",
    "reuse_key",
    "created_at",
)


def step_row(
    id: int, run_id: str, parent_execution_id: int | None, facts: Mapping[str, Any]
) -> dict[str, Any]:
    """The row of ``T_STEP``: its id, run and caller, and each of ``STEP_FACTS``."""
    return {
        "id": id,
        "run_id": run_id,
        "parent_execution_id": parent_execution_id,
        **{name: facts[name] for name in STEP_FACTS},
    }


def live_row(step: LiveStep, call_index: int | None, created_at: float) -> dict[str, Any]:
    """The row of a step made live by this process."""
    facts = {name: getattr(step, name, None) for name in STEP_FACTS}
    facts.update(call_index=call_index, created_at=created_at)
    return step_row(step.id, step.run_id, step.parent_execution_id, facts)


def live_step(row: Mapping[str, Any]) -> LiveStep:
    """A step as the orchestrator holds it, from its row."""
    return LiveStep(
        id=row["id"],
        run_id=row["run_id"],
        number=row["number"],
        repository=row["repository"],
        target=row["target"],
        type=row["type"],
        arguments=row["arguments"],
        options=row["options"],
        parent_execution_id=row["parent_execution_id"],
        cache_key=row["cache_key"],
        memo_key=row["memo_key"],
        code_hash=row["code_hash"],
        reuse_key=row["reuse_key"],
    )
