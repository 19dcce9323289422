"""In-process orchestration: the real orchestrator over a real SQLite database, a fake clock.

No HTTP, no subprocess: a test drives ``ProjectOrchestrator`` as the routes
and the agent protocol do, and an ``Agent`` stands in for one agent's
WebSocket (it keeps what the server sends it). Time moves only when the test
moves the clock, so a retry's delay or a cache's age costs nothing to wait for.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from coflux.records.targets import (
    CacheOptions,
    Parameter,
    RetryOptions,
    TargetOptions,
    TargetSpec,
)
from coflux.remote.server.db import SQLiteDatabase
from coflux.remote.server.orchestration import queries
from coflux.remote.server.orchestration.clock import Clock
from coflux.remote.server.orchestration.project import ProjectOrchestrator
from coflux.remote.server.settings import Settings

REPOSITORY = "repo"
#: Wall-clock and monotonic start of every test's clock.
START = 1_800_000_000.0


@dataclass
class FakeTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock(Clock):
    """Time that moves only by ``advance``; timers fire as it passes them."""

    def __init__(self) -> None:
        self.now = START
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t.due <= self.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due and not t.cancelled]
        for timer in sorted(due, key=lambda t: t.due):
            timer.callback()


def target(
    name: str,
    type: str = "task",
    parameters: tuple[str, ...] = ("x",),
    **options: Any,
) -> dict[str, Any]:
    """A manifest entry, as an agent registers it."""
    if "cache" in options and not isinstance(options["cache"], CacheOptions):
        options["cache"] = CacheOptions(max_age=options["cache"])
    if "retries" in options and not isinstance(options["retries"], RetryOptions):
        options["retries"] = RetryOptions(*options["retries"])
    return TargetSpec(
        name=name,
        type=type,  # type: ignore[arg-type]
        parameters=tuple(Parameter(p) for p in parameters),
        options=TargetOptions(**options),
        code_hash=f"hash-of-{name}",
    ).to_dict()


def spec(entry: dict[str, Any]) -> TargetSpec:
    """The target a running execution calls, as its agent sends it."""
    return TargetSpec.from_dict(entry)


def value(data: Any) -> dict[str, Any]:
    """An argument or result as the SDK serialises a small JSON value."""
    return {"format": "json", "data": data, "size": len(str(data))}


@dataclass
class Agent:
    """Stands in for one agent's WebSocket: what the server sends is kept in ``sent``."""

    orchestrator: ProjectOrchestrator
    id: str = "agent-1"
    concurrency: int = 4
    running: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    _read: int = 0

    def __post_init__(self) -> None:
        self.session = self.orchestrator.connect(
            self.id, "production", {REPOSITORY}, self.concurrency, self.sent.append, self.running
        )

    def received(self, method: str = "execute") -> list[str]:
        """The execution references in ``method`` messages since the last call."""
        new, self._read = self.sent[self._read :], len(self.sent)
        return [m["params"]["execution_id"] for m in new if m["method"] == method]

    async def run(self, ref: str) -> None:
        await self.orchestrator.started(self.session, ref)

    async def succeed(self, ref: str, result: Any) -> None:
        await self.orchestrator.put_result(self.session, ref, value(result), None)

    async def fail(self, ref: str) -> None:
        error = {"type": "ValueError", "message": "no", "traceback": ""}
        await self.orchestrator.put_result(self.session, ref, None, error)


class Project:
    """One project's orchestrator, its clock and its database."""

    def __init__(self, settings: Settings, engine: Engine, clock: FakeClock) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.orchestrator = self._orchestrator()

    def _orchestrator(self) -> ProjectOrchestrator:
        orchestrator = ProjectOrchestrator("p", self.engine, self.settings, clock=self.clock)
        orchestrator.load()
        return orchestrator

    async def restart(self) -> ProjectOrchestrator:
        """A new orchestrator over the same database, as after a server restart."""
        await self.orchestrator.stop()
        self.orchestrator = self._orchestrator()
        return self.orchestrator

    async def submit(self, workflow: str, *arguments: Any) -> str:
        return await self.orchestrator.submit(
            "production", REPOSITORY, workflow, [value(a) for a in arguments]
        )

    async def settle(self) -> None:
        """Everything staged is committed (and what a commit releases has run)."""
        await self.orchestrator.batch.committed()

    def executions(self, run_id: str) -> list[tuple[str, str, str | None]]:
        """(execution, state, reused from) of each execution of the run, as stored."""
        with self.orchestrator.engine.connect() as c:
            run = queries.get_run(c, run_id)
        return [
            (e["id"], e["state"], e["reused_from"]) for s in run["steps"] for e in s["executions"]
        ]

    def value_of(self, run_id: str) -> Any:
        with self.orchestrator.engine.connect() as c:
            run = queries.get_run(c, run_id)
        return run["steps"][0]["executions"][-1]["value"]["data"]


def migrated_database(directory: Path) -> Path:
    """A migrated, empty project database made in ``directory``: each test copies it
    (migrating takes longer than any rule under test)."""
    database = SQLiteDatabase(directory, "NORMAL")
    database.release(database.open("p"))
    return directory / "p.sqlite"


@asynccontextmanager
async def project(
    directory: Path, template: Path, targets: list[dict[str, Any]]
) -> AsyncIterator[Project]:
    """A project with a production environment and ``targets`` registered in it."""
    settings = Settings(data_dir=directory)
    settings.projects_dir.mkdir(parents=True)
    shutil.copyfile(template, settings.projects_dir / "p.sqlite")
    database = SQLiteDatabase(settings.projects_dir, "NORMAL")
    engine = database.open("p")
    p = Project(settings, engine, FakeClock())
    try:
        await p.orchestrator.create_environment("production", None)
        await p.orchestrator.register("production", REPOSITORY, targets)
        yield p
    finally:
        await p.orchestrator.stop()
        database.release(engine)
