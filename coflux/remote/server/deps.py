"""Dependencies shared by route modules, as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .orchestration.project import ProjectOrchestrator
from .orchestration.registry import Projects


def get_projects(request: Request) -> Projects:
    return request.app.state.projects


async def get_project(project: str, request: Request) -> ProjectOrchestrator:
    return await request.app.state.projects.get(project)


ProjectsDep = Annotated[Projects, Depends(get_projects)]
ProjectDep = Annotated[ProjectOrchestrator, Depends(get_project)]
