"""The projects a server hosts: one database file and one orchestrator each."""

from __future__ import annotations

import asyncio

from ....errors import Conflict, NotFound
from ....models import validate_project_name
from ..db import open_project_database
from ..settings import Settings
from .project import ProjectOrchestrator

DEFAULT_ENVIRONMENT = "production"


class Projects:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._open: dict[str, ProjectOrchestrator] = {}
        self._lock = asyncio.Lock()

    def _path(self, name: str):  # type: ignore[no-untyped-def]
        return self.settings.projects_dir / f"{validate_project_name(name)}.sqlite"

    def names(self, visible_to: str | None = None) -> list[str]:
        directory = self.settings.projects_dir
        if not directory.is_dir():
            return []
        names = sorted(p.stem for p in directory.glob("*.sqlite"))
        return [n for n in names if visible_to in (None, n)]

    async def get(self, name: str, visible_to: str | None = None) -> ProjectOrchestrator:
        """The project ``name``; with ``visible_to`` (a token's project), any other
        project is answered exactly as an unknown one, so nothing tells whether it exists."""
        orchestrator = self._open.get(name)
        if orchestrator is not None and visible_to in (None, name):
            return orchestrator
        path = self._path(name)
        if not path.exists() or visible_to not in (None, name):
            raise NotFound(
                f"unknown project {name!r}; create it with `coflux projects create {name}`"
            )
        return await self._start(name)

    async def _start(self, name: str) -> ProjectOrchestrator:
        async with self._lock:
            if name not in self._open:
                engine = open_project_database(self._path(name), self.settings.synchronous)
                orchestrator = ProjectOrchestrator(name, engine, self.settings)
                await orchestrator.start()
                self._open[name] = orchestrator
            return self._open[name]

    async def create(self, name: str, environment: str | None = DEFAULT_ENVIRONMENT) -> None:
        if self._path(name).exists():
            raise Conflict(f"project {name!r} already exists")
        orchestrator = await self._start(name)
        if environment:
            await orchestrator.create_environment(environment, None)

    async def close(self) -> None:
        for orchestrator in self._open.values():
            await orchestrator.stop()
            orchestrator.engine.dispose()
        self._open.clear()
