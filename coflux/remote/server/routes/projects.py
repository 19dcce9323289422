"""Projects: list and create."""

from __future__ import annotations

from fastapi import APIRouter

from ...schemas import ProjectCreate
from ..deps import ProjectsDep

router = APIRouter(prefix="/api/projects")


@router.get("")
def list_projects(projects: ProjectsDep) -> list[dict[str, str]]:
    return [{"name": name} for name in projects.names()]


@router.post("", status_code=201)
async def create_project(body: ProjectCreate, projects: ProjectsDep) -> dict[str, str]:
    await projects.create(body.name)
    return {"name": body.name}
