"""Manifests: register a repository's targets in an environment, and look them up
(with the commit each registration came from)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...schemas import ManifestCreate
from ..deps import ProjectDep
from ..orchestration import queries

router = APIRouter(prefix="/api/projects/{project}")


@router.post("/manifests", status_code=201)
async def register(body: ManifestCreate, project: ProjectDep) -> dict[str, Any]:
    provenance = (None, None) if body.provenance is None else body.provenance.as_tuple()
    await project.register(body.environment, body.repository, body.targets, provenance)
    return {"repository": body.repository, "targets": len(body.targets)}


@router.get("/manifests")
def list_manifests(environment: str, project: ProjectDep) -> list[dict[str, Any]]:
    """The registration of each repository the environment serves (its own, else its
    nearest base's): targets, git commit, dirty tree, when registered."""
    lineage = project._ancestry(project.environment_id(environment, archived=True))
    with project.engine.connect() as c:
        found = queries.registrations(c, lineage)
    for registration in found:
        registration["environment"] = project.environment_names[registration.pop("environment_id")]
    return found


@router.get("/targets/{repository}/{target}")
def get_target(
    repository: str, target: str, environment: str, project: ProjectDep
) -> dict[str, Any]:
    environment_id = project.environment_id(environment)
    return project.find_target(environment_id, repository, target).to_dict()
