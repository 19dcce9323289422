"""Assets of a project: record one (after its blobs), show one, list a run's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ....assets import PREFIX, blob_keys, decode, encode, parse, parse_reference
from ....errors import BlobError, Conflict, NotFound
from ...schemas import AssetCreate
from ..blobstores import ProjectBlobs, blobs_of
from ..deps import ProjectDep, RunDep
from ..orchestration import assets, queries

router = APIRouter(prefix="/api/projects/{project}")


def _store(request: Request, project: str) -> ProjectBlobs:
    return blobs_of(request.app.state.settings, project)


@router.post("/assets", status_code=201)
async def record_asset(body: AssetCreate, request: Request, project: ProjectDep) -> dict[str, Any]:
    """Record an asset whose blobs were uploaded; its manifest is stored as a blob
    and its reference (``a:<hash of the manifest>``) returned."""
    entries = parse(body.entries)
    store = _store(request, project.name)
    missing = await run_in_threadpool(store.missing, blob_keys(entries))
    if missing:
        raise Conflict(
            f"{len(missing)} blob(s) of the asset aren't on the server (first: {missing[0]}); "
            "upload them first"
        )
    key = await run_in_threadpool(store.put_bytes, encode(entries, file=body.kind == "file"))
    return await project.record_asset(key, entries, body.path, body.execution)


@router.get("/assets/{ref}")
def get_asset(ref: str, request: Request, project: ProjectDep) -> dict[str, Any]:
    """An asset's files, and where it was persisted."""
    key = parse_reference(ref)
    store = _store(request, project.name)
    if not store.has(key):
        raise NotFound(f"unknown asset {PREFIX}{key} in project {project.name!r}")
    try:
        entries = decode(store.get_bytes(key))
    except BlobError as e:
        raise NotFound(f"asset {PREFIX}{key} can't be read: {e}") from None
    with project.engine.connect() as c:
        persisted = assets.asset_records(c, key)
    return {
        "ref": f"{PREFIX}{key}",
        "files": len(entries),
        "size": sum(e.size for e in entries),
        "entries": [e.to_dict() for e in entries],
        "persisted": persisted,
    }


@router.get("/runs/{run}/assets")
def run_assets(run_id: RunDep, project: ProjectDep) -> list[dict[str, Any]]:
    """The assets a run's executions persisted."""
    with project.engine.connect() as c:
        queries.run_summary(c, run_id)  # 404 for an unknown run
        return assets.run_assets(c, run_id)
