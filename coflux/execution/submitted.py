"""The submissions an execution has made that the agent hasn't confirmed yet.

``task.submit()`` inside an execution doesn't wait for the server's answer, so
a loop of submits is pipelined. But the execution's outcome must never reach
the server before its submissions do: the server refuses a call from an
execution that has ended, and a workflow that submits its last tasks and
returns would lose them. So the execution process waits here for every
answer before it sends an outcome (a submission is acknowledged once the
server has committed its step). A refused submission the task never looked
at (through the ``Execution``) fails an execution that would otherwise
succeed, since nothing else would ever report it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import CofluxError

Answer = Callable[[], Any]


class Submitted:
    def __init__(self) -> None:
        #: Name of the target, the answer, and whether the task has looked at it.
        self._answers: list[list[Any]] = []

    def add(self, name: str, answer: Answer) -> Answer:
        """A submission of ``name`` sent; ``answer()`` waits for the agent's reply.
        Returns the answer for the task to use: a refusal it has seen that way
        is its own to handle."""
        entry = [name, answer, False]
        self._answers.append(entry)

        def seen() -> Any:
            entry[2] = True
            return answer()

        return seen

    def confirm(self) -> None:
        """Wait for every answer; raise the first refusal as the execution's error."""
        refusals = self._settle()
        if refusals:
            name, error = refusals[0]
            more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
            raise CofluxError(f"submitting {name} failed{more}: {error}")

    def settle(self) -> None:
        """Wait for every answer, whatever it is (the execution failed already)."""
        self._settle()

    def _settle(self) -> list[tuple[str, CofluxError]]:
        answers, self._answers = self._answers, []
        refusals = []
        for name, answer, seen in answers:
            try:
                answer()
            except CofluxError as e:
                if not seen:
                    refusals.append((name, e))
        return refusals
