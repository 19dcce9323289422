"""The projects a server hosts: one database (file or schema) and one orchestrator each."""

from __future__ import annotations

import asyncio

from ....errors import Conflict, NotFound
from ..db import Database, open_database
from ..settings import Settings
from .project import ProjectOrchestrator

DEFAULT_ENVIRONMENT = "production"


class Projects:
    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self.settings = settings
        self.database = database or open_database(
            settings.database_url, settings.projects_dir, settings.synchronous
        )
        self._open: dict[str, ProjectOrchestrator] = {}
        self._lock = asyncio.Lock()

    def names(self, visible_to: str | None = None) -> list[str]:
        return [n for n in self.database.names() if visible_to in (None, n)]

    async def get(self, name: str, visible_to: str | None = None) -> ProjectOrchestrator:
        """The project ``name``; with ``visible_to`` (a token's project), any other
        project is answered exactly as an unknown one, so nothing tells whether it exists."""
        orchestrator = self._open.get(name)
        if orchestrator is not None and visible_to in (None, name):
            return orchestrator
        if visible_to not in (None, name) or not self.database.exists(name):
            raise NotFound(
                f"unknown project {name!r}; create it with `coflux projects create {name}`"
            )
        return await self._start(name)

    async def _start(self, name: str) -> ProjectOrchestrator:
        async with self._lock:
            if name not in self._open:
                engine = self.database.open(name)
                orchestrator = ProjectOrchestrator(name, engine, self.settings)
                await orchestrator.start()
                self._open[name] = orchestrator
            return self._open[name]

    async def create(self, name: str, environment: str | None = DEFAULT_ENVIRONMENT) -> None:
        if self.database.exists(name):
            raise Conflict(f"project {name!r} already exists")
        orchestrator = await self._start(name)
        if environment:
            await orchestrator.create_environment(environment, None)

    async def close(self) -> None:
        for orchestrator in self._open.values():
            await orchestrator.stop()
            orchestrator.engine.dispose()
        self._open.clear()
        self.database.close()
