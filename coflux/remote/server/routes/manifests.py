"""Manifests: register a repository's targets in an environment, and look them up."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...schemas import ManifestCreate
from ..deps import ProjectDep

router = APIRouter(prefix="/api/projects/{project}")


@router.post("/manifests", status_code=201)
async def register(body: ManifestCreate, project: ProjectDep) -> dict[str, Any]:
    provenance = (None, None) if body.provenance is None else body.provenance.as_tuple()
    await project.register(body.environment, body.repository, body.targets, provenance)
    return {"repository": body.repository, "targets": len(body.targets)}


@router.get("/targets/{repository}/{target}")
def get_target(
    repository: str, target: str, environment: str, project: ProjectDep
) -> dict[str, Any]:
    environment_id = project.environment_id(environment)
    return project.find_target(environment_id, repository, target).to_dict()
