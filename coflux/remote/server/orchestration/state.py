"""The orchestrator's in-memory picture of what is live: steps, executions, agent sessions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ....records.placement import Tags

FINISHED_CACHE_SIZE = 10_000
#: A sensor that ends is restarted, but not more often than this (seconds).
SENSOR_RESTART_INTERVAL = 1.0

Send = Callable[[dict[str, Any]], None]
ResultCallback = Callable[[dict[str, Any]], None]


@dataclass
class LiveStep:
    id: int
    run_id: str
    number: int
    repository: str
    target: str
    type: str
    arguments: list[dict[str, Any]]
    options: dict[str, Any]
    parent_execution_id: int | None
    cache_key: str | None = None
    memo_key: str | None = None
    defer_key: str | None = None
    code_hash: str | None = None
    reuse_key: str | None = None


@dataclass
class LiveExecution:
    """An execution that has not finished yet."""

    id: int
    step: LiveStep
    attempt: int
    environment_id: int
    state: str = "queued"
    session_id: str | None = None
    started: bool = False
    #: Executions that must finish before this one may start (the ``wait`` option).
    wait_for: set[int] = field(default_factory=set)
    log_sequence: int = 0
    #: The steps this execution has called, by call index (re-sent calls find them).
    calls: dict[int, str] = field(default_factory=dict)
    #: Loaded from the database at start-up rather than created by this process.
    restored: bool = False
    #: Executions this one was passed or waited for (recorded once each).
    dependencies: set[int] = field(default_factory=set)
    #: Wall-clock time before which it may not start (``delay``, retry back-off).
    execute_after: float | None = None
    #: A pending execution with the same cache key whose result this one will reuse.
    linked_to: int | None = None
    #: How many retries the step has used up to this attempt.
    retries_used: int = 0
    #: Arguments replacing the step's (a sensor restarted from its checkpoint).
    arguments: list[dict[str, Any]] | None = None
    #: The arguments a sensor last checkpointed.
    checkpoint: list[dict[str, Any]] | None = None
    started_at: float | None = None
    #: When it was last assigned to an agent (monotonic), for the start timeout.
    assigned_at: float | None = None
    #: Part of an incremental re-run: calls reuse unchanged earlier results of the run.
    incremental: bool = False

    @property
    def ref(self) -> str:
        return f"{self.step.run_id}:{self.step.number}:{self.attempt}"


@dataclass
class Session:
    """An agent, connected or recently so; it keeps its executions while it is heard from."""

    id: str
    environment_id: int
    repositories: set[str]
    concurrency: int
    send: Send | None
    last_seen: float
    executions: set[int] = field(default_factory=set)
    #: Of ``executions``, those blocked waiting for another execution's result;
    #: they don't count against the agent's concurrency, so nesting never deadlocks.
    waiting: dict[int, int] = field(default_factory=dict)
    #: The agent is stopping: it finishes what it runs and takes nothing new.
    draining: bool = False
    #: Placement tags from its hello: it takes only executions whose step's
    #: ``requires`` these satisfy.
    provides: Tags = field(default_factory=dict)
    #: (git commit, dirty) of the code it serves, from its hello or latest manifest.
    provenance: tuple[str | None, bool | None] = (None, None)
    #: The server holds a frame of this agent's it has not finished reading
    #: (it waits for earlier messages to be committed first, I9): the agent
    #: is heard, however long that takes.
    reading: bool = False

    @property
    def free(self) -> int:
        """How many more executions this agent may be given now.

        Executions blocked waiting for another's result don't count against
        ``concurrency`` (so nested calls never deadlock), but the total stays
        bounded, and with it the agent's processes (invariant I9).
        """
        if self.draining:
            return 0
        active = len(self.executions) - len(self.waiting)
        return min(self.concurrency - active, self.held_limit - len(self.executions))

    @property
    def held_limit(self) -> int:
        """The most executions the agent holds at once, waiting ones included: a
        chain of nested calls deeper than this waits for a second agent (the
        waiting notice says so)."""
        return max(4 * self.concurrency, 16)
