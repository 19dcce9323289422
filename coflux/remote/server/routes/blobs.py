"""Blobs of a project: content-addressed, validated names, verified on upload and read."""

from __future__ import annotations

import errno

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ....cache import BlobStore, validate_key
from ....errors import BlobError, InvalidInput, NotFound, StorageFull
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
    """Store a blob, streamed to disk (memory stays flat), verified against its key."""
    validate_key(key)
    settings = request.app.state.settings
    store = _store(request, project.name)
    if store.has(key):
        # Already here: the upload is read and discarded; the stored file is untouched.
        async for _ in request.stream():
            pass
        return {"key": key}
    writer = store.writer()
    try:
        async for chunk in request.stream():
            if writer.size + len(chunk) > settings.max_blob:
                raise BlobTooLarge(f"blob larger than {settings.max_blob} bytes")
            await run_in_threadpool(writer.write, chunk)
        await run_in_threadpool(writer.commit, key)
    except BlobError as e:
        raise HashMismatch(str(e)) from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"the server is out of disk space storing blob {key}") from None
        raise
    finally:
        writer.abort()  # a no-op once committed
    return {"key": key}


class BlobTooLarge(InvalidInput):
    status_code = 413
    code = "too_large"


class HashMismatch(InvalidInput):
    status_code = 400
    code = "hash_mismatch"
