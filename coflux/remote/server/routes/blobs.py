"""Blobs of a project: content-addressed, validated names, verified on upload and read."""

from __future__ import annotations

import errno

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ....cache import validate_key
from ....cache.frames import IntoStore, frames, write_streamed
from ....cache.store import BlobWriter
from ....errors import BlobError, InvalidInput, NotFound, StorageFull
from ...schemas import BlobList
from .. import failpoints
from ..blobcheck import intact
from ..blobstores import ProjectBlobs, blobs_of
from ..deps import ProjectDep

router = APIRouter(prefix="/api/projects/{project}/blobs")


def _store(request: Request, project: str) -> ProjectBlobs:
    return blobs_of(request.app.state.settings, project)


def _key(key: str) -> str:
    try:
        return validate_key(key)
    except InvalidInput:
        raise NotFound(f"unknown blob {key[:64]!r}") from None


@router.post("/missing")
def missing(body: BlobList, request: Request, project: ProjectDep) -> dict[str, list[str]]:
    """Which of these keys the server doesn't have yet (upload only those)."""
    store = _store(request, project.name)
    return {"missing": store.missing([validate_key(k) for k in body.keys])}


@router.post("/batch", status_code=201)
async def put_batch(request: Request, project: ProjectDep) -> dict[str, int]:
    """Store a batch of blobs sent as one stream of frames (see ``coflux.cache.frames``),
    each verified against its key."""
    store = _store(request, project.name)
    into = IntoStore(
        store,
        request.app.state.settings.max_blob,
        before_commit=lambda: failpoints.hit("blobs.before_batch_commit"),
    )
    try:
        await write_streamed(into, request.stream())
    except BlobError as e:
        raise HashMismatch(str(e)) from None
    except OSError as e:
        raise _storage_error(e) from None
    finally:
        into.abort()
    return {"stored": len(into.stored)}


@router.post("/fetch")
def fetch_batch(body: BlobList, request: Request, project: ProjectDep) -> StreamingResponse:
    """Many blobs as one stream of frames; every key must be here."""
    store = _store(request, project.name)
    keys = [validate_key(k) for k in body.keys]
    missing = store.missing(keys)
    if missing:
        raise NotFound(f"{len(missing)} blob(s) aren't on the server (first: {missing[0]})")
    # Each known intact before the first byte: a corrupt one is a JSON error
    # (and quarantined, so missing from then on), not a stream cut midway.
    for key in keys:
        problem = intact(store, key)
        if problem is not None:
            raise BlobError(problem)
    return StreamingResponse(frames(store, keys), media_type="application/octet-stream")


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
    # Small blobs are read whole so a corrupt one is refused before any byte is
    # sent; a large one is verified (once per process) before it is streamed.
    if store.size(key) <= 8 * 1024 * 1024:
        return Response(store.get_bytes(key), media_type="application/octet-stream")
    problem = intact(store, key)
    if problem is not None:
        raise BlobError(problem)
    return StreamingResponse(store.open_chunks(key), media_type="application/octet-stream")


_WRITE_SIZE = 4 * 1024 * 1024


def _finish(writer: BlobWriter, rest: bytes, key: str) -> None:
    writer.write(rest)
    writer.commit(key)


@router.put("/{key}", status_code=201)
async def put_blob(key: str, request: Request, project: ProjectDep) -> dict[str, str]:
    """Store a blob, streamed to disk (memory stays flat), verified against its key."""
    validate_key(key)
    store = _store(request, project.name)
    if await run_in_threadpool(store.has, key):
        # Already here: the upload is read and discarded; the stored file is untouched.
        async for _ in request.stream():
            pass
        return {"key": key}
    writer = store.writer()
    pending = bytearray()
    try:
        # Written in pieces of a few MiB from a worker thread: the event loop
        # keeps serving, and the hop to the thread is paid per piece, not per packet.
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= _WRITE_SIZE:
                await run_in_threadpool(writer.write, bytes(pending))
                pending.clear()
        await run_in_threadpool(_finish, writer, bytes(pending), key)
    except BlobError as e:
        raise HashMismatch(str(e)) from None
    except OSError as e:
        raise _storage_error(e) from None
    finally:
        writer.abort()  # a no-op once committed
    return {"key": key}


def _storage_error(e: OSError) -> Exception:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull("the server is out of disk space; nothing partial was kept")
    return e


class HashMismatch(InvalidInput):
    status_code = 400
    code = "hash_mismatch"
