"""Projects: list and create."""

from __future__ import annotations

from fastapi import APIRouter

from ....errors import Forbidden
from ...schemas import ProjectCreate
from ..deps import ProjectsDep, VisibleDep

router = APIRouter(prefix="/api/projects")


@router.get("")
def list_projects(projects: ProjectsDep, visible: VisibleDep) -> list[dict[str, str]]:
    return [{"name": name} for name in projects.names(visible)]


@router.post("", status_code=201)
async def create_project(
    body: ProjectCreate, projects: ProjectsDep, visible: VisibleDep
) -> dict[str, str]:
    if visible not in (None, body.name):
        # The same answer whether or not the other project exists.
        raise Forbidden(f"a token of project {visible!r} can create only that project")
    await projects.create(body.name)
    return {"name": body.name}
