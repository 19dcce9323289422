"""Run ids and references to steps and executions, as users write them."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from ..errors import InvalidInput

# Run IDs are random, globally unique (runs made on two machines never collide)
# and easy to read aloud: Crockford's base32 without I, L, O, U.
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RUN_ID_LENGTH = 10
_RUN_ID = re.compile(rf"[{_ID_ALPHABET}]{{{RUN_ID_LENGTH}}}")


def new_run_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(RUN_ID_LENGTH))


@dataclass(frozen=True, order=True)
class StepRef:
    run_id: str
    number: int

    def __str__(self) -> str:
        return f"{self.run_id}:{self.number}"


@dataclass(frozen=True, order=True)
class ExecutionRef:
    run_id: str
    step: int
    attempt: int

    @property
    def step_ref(self) -> StepRef:
        return StepRef(self.run_id, self.step)

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step}:{self.attempt}"


def parse_reference(text: str) -> str | StepRef | ExecutionRef:
    """Parse ``RUN``, ``RUN:N`` or ``RUN:N:A``; raise ``InvalidInput`` otherwise."""
    parts = text.strip().upper().split(":") if isinstance(text, str) else []
    try:
        if parts and _RUN_ID.fullmatch(parts[0]):
            if len(parts) == 1:
                return parts[0]
            if len(parts) == 2 and int(parts[1]) >= 1:
                return StepRef(parts[0], int(parts[1]))
            if len(parts) == 3 and int(parts[1]) >= 1 and int(parts[2]) >= 1:
                return ExecutionRef(parts[0], int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    raise InvalidInput(
        f"invalid reference {text!r}: expected a run (e.g. 7K2QF9XH3M), "
        "a step (7K2QF9XH3M:2) or an execution (7K2QF9XH3M:2:1)"
    )


def run_and_step(text: str) -> tuple[str, int | None]:
    """The run and, when given, the step number of ``RUN``, ``RUN:N`` or ``RUN:N:A``."""
    ref = parse_reference(text)
    if isinstance(ref, str):
        return ref, None
    if isinstance(ref, StepRef):
        return ref.run_id, ref.number
    return ref.run_id, ref.step


def parse_execution_ref(text: str) -> ExecutionRef:
    ref = parse_reference(text)
    if not isinstance(ref, ExecutionRef):
        raise InvalidInput(f"invalid execution reference {text!r}: expected RUN:STEP:ATTEMPT")
    return ref
