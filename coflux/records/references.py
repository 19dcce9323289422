"""Run IDs and references to steps and executions, as users write them.

A run is its ID (``7K2QF9XH3M``, a ``str``), a step a ``StepRef``
(``7K2QF9XH3M:2``), an execution an ``ExecutionRef`` (``7K2QF9XH3M:2:1``).
Text becomes one of them once, at the edge where it arrives (the CLI's
arguments, a route's path through ``coflux.remote.server.deps``, a message
from an agent), and travels typed from there: the HTTP client builds its URLs
from them. Stored rows and the wire keep the text form (``str()``); a row's
integer id is never called a reference.
"""

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

    def execution(self, attempt: int) -> ExecutionRef:
        return ExecutionRef(self.run_id, self.number, attempt)


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


#: What a user may name: a run (its ID), a step or an execution.
Reference = str | StepRef | ExecutionRef

_EXAMPLES = "a run (e.g. 7K2QF9XH3M), a step (7K2QF9XH3M:2) or an execution (7K2QF9XH3M:2:1)"


def parse_reference(text: str) -> Reference:
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
    raise InvalidInput(f"invalid reference {text!r}: expected {_EXAMPLES}")


def kind_of(ref: Reference) -> str:
    """``run``, ``step`` or ``execution``: what a reference names, for messages."""
    if isinstance(ref, str):
        return "run"
    return "step" if isinstance(ref, StepRef) else "execution"


def run_of(ref: Reference) -> str:
    """The run a reference is in."""
    return ref if isinstance(ref, str) else ref.run_id


def step_of(ref: Reference) -> StepRef | None:
    """The step a reference names (an execution's step); None for a run."""
    if isinstance(ref, str):
        return None
    return ref if isinstance(ref, StepRef) else ref.step_ref


def run_or_step(text: str) -> str | StepRef:
    """A run, or a step: ``RUN``, ``RUN:N``, or ``RUN:N:A`` (which names its step)."""
    ref = parse_reference(text)
    return ref if isinstance(ref, str) else step_of(ref) or ref.run_id


def parse_step_ref(text: str) -> StepRef:
    """A step: ``RUN:N``, or ``RUN:N:A`` (which names its step); a run is refused."""
    ref = parse_reference(text)
    step = step_of(ref)
    if step is None:
        raise InvalidInput(f"{text!r} is a run; name a step, e.g. {ref}:1")
    return step


def parse_execution_ref(text: str) -> ExecutionRef:
    ref = parse_reference(text)
    if not isinstance(ref, ExecutionRef):
        raise InvalidInput(f"invalid execution reference {text!r}: expected RUN:STEP:ATTEMPT")
    return ref
