"""Blobs of a project: content-addressed, validated names, verified on upload and read."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ....cache import BlobStore, validate_key
from ....errors import BlobError, InvalidInput, NotFound
from ...schemas import BlobList
from ..deps import ProjectDep

router = APIRouter(prefix="/api/projects/{project}/blobs")


def _store(request: Request, project: str) -> BlobStore:
    return BlobStore(request.app.state.settings.blobs_dir(project))


def _key(key: str) -> str:
    try:
        return validate_key(key)
    except InvalidInput:
        raise NotFound(f"unknown blob {key[:64]!r}") from None


@router.post("/missing")
def missing(body: BlobList, request: Request, project: ProjectDep) -> dict[str, list[str]]:
    """Which of these keys the server doesn't have yet (upload only those)."""
    store = _store(request, project.name)
    return {"missing": [k for k in body.keys if not store.has(validate_key(k))]}


@router.head("/{key}")
def head_blob(key: str, request: Request, project: ProjectDep) -> Response:
    store = _store(request, project.name)
    if not store.has(_key(key)):
        raise NotFound(f"unknown blob {key}")
    return Response(headers={"Content-Length": str(store.size(key))})


@router.get("/{key}")
def get_blob(key: str, request: Request, project: ProjectDep) -> Response:
    store = _store(request, project.name)
    if not store.has(_key(key)):
        raise NotFound(f"unknown blob {key}")
    # Small blobs are read whole so a corrupt one is refused before any byte is sent.
    if store.size(key) <= 8 * 1024 * 1024:
        return Response(store.get_bytes(key), media_type="application/octet-stream")
    return StreamingResponse(store.open_chunks(key), media_type="application/octet-stream")


@router.put("/{key}", status_code=201)
async def put_blob(key: str, request: Request, project: ProjectDep) -> dict[str, str]:
    try:
        validate_key(key)
    except InvalidInput as e:
        raise InvalidInput(str(e)) from None
    settings = request.app.state.settings
    store = _store(request, project.name)
    if store.has(key):
        return {"key": key}
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > settings.max_blob:
            raise BlobTooLarge(f"blob larger than {settings.max_blob} bytes")
    try:
        store.put_stream([bytes(body)], expected_key=key)
    except BlobError as e:
        raise InvalidInput(str(e)) from None
    return {"key": key}


class BlobTooLarge(InvalidInput):
    status_code = 413
    code = "too_large"
