"""Environments of a project: list and create."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...schemas import EnvironmentArchive, EnvironmentCreate, EnvironmentUpdate
from ..deps import ProjectDep

router = APIRouter(prefix="/api/projects/{project}/environments")


@router.get("")
def list_environments(project: ProjectDep) -> list[dict[str, Any]]:
    return project.list_environments()


@router.post("", status_code=201)
async def create_environment(body: EnvironmentCreate, project: ProjectDep) -> dict[str, Any]:
    return await project.create_environment(body.name, body.base)


@router.patch("")
async def update_environment(body: EnvironmentUpdate, project: ProjectDep) -> dict[str, Any]:
    return await project.update_environment(body.name, body.base, body.no_base, body.new_name)


@router.post("/archive")
async def archive_environment(body: EnvironmentArchive, project: ProjectDep) -> dict[str, Any]:
    return await project.archive_environment(body.name)
