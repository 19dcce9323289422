"""Dependencies shared by route modules, as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from .orchestration.project import ProjectOrchestrator
from .orchestration.registry import Projects
from .security import GRANT


def get_projects(request: Request) -> Projects:
    return request.app.state.projects


def visible_project(request: HTTPConnection) -> str | None:
    """The project the request's token is confined to (None when the server runs without auth)."""
    grant = request.scope.get(GRANT)
    return grant.project if grant is not None else None


async def get_project(project: str, request: Request) -> ProjectOrchestrator:
    return await request.app.state.projects.get(project, visible_project(request))


ProjectsDep = Annotated[Projects, Depends(get_projects)]
VisibleDep = Annotated[str | None, Depends(visible_project)]
ProjectDep = Annotated[ProjectOrchestrator, Depends(get_project)]
