"""Direct transfers: the server authorises, the client and the object store move the bytes.

For a store that presigns (``s3://``), ``uploads`` answers which of the
blobs offered are missing with a presigned URL for each (the URLs of its
parts for a large one, completed with ``uploads/complete``), and
``downloads`` a presigned URL for each blob asked for. The project in the
path is the one the token opens (the guard checks it), and every URL names a
key under that project's prefix only: a token for one project can never get
a URL for another's blob. For the local directory both answer
``"direct": false``, and clients use the proxied routes of ``routes/blobs.py``.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ....cache import validate_key
from ....errors import BlobError, InvalidInput
from ...schemas import BlobList
from ..blobstores import PresignedBlobs, blobs_of
from ..deps import ProjectDep

router = APIRouter(prefix="/api/projects/{project}/blobs")


class Offered(BaseModel):
    key: str = Field(max_length=64)
    size: int = Field(ge=0)


class Uploads(BaseModel):
    blobs: list[Offered] = Field(max_length=10_000)


class Completion(BaseModel):
    key: str = Field(max_length=64)
    upload_id: str = Field(min_length=1, max_length=1024)
    etags: list[str] = Field(min_length=1, max_length=10_000)
    size: int = Field(ge=0)


@router.post("/uploads")
async def uploads(body: Uploads, request: Request, project: ProjectDep) -> dict[str, Any]:
    """Which of the offered blobs the store lacks, and (when it presigns) how to
    upload each one directly. An object store isn't asked about small blobs
    (``unchecked_size``): they are all listed, with plans that store them only
    if absent."""
    store = blobs_of(request.app.state.settings, project.name)
    limit = request.app.state.settings.max_blob
    sizes = {validate_key(b.key): b.size for b in body.blobs}
    for key, size in sizes.items():
        if size > limit:
            raise InvalidInput(f"blob {key} is {size} bytes, over the {limit}-byte limit")
    if not store.presigns:
        missing = await run_in_threadpool(store.missing, list(sizes))
        return {"direct": False, "missing": missing, "uploads": []}
    presigned = cast(PresignedBlobs, store)  # presigns is true
    # Small blobs aren't checked: their plans store them only if absent.
    small = presigned.unchecked_size
    checked = await run_in_threadpool(store.missing, [k for k, n in sizes.items() if n > small])
    missing = [k for k, n in sizes.items() if n <= small or k in set(checked)]
    plans = await run_in_threadpool(lambda: [presigned.upload_plan(k, sizes[k]) for k in missing])
    return {"direct": True, "missing": missing, "uploads": plans}


@router.post("/uploads/complete", status_code=201)
async def complete(body: Completion, request: Request, project: ProjectDep) -> dict[str, str]:
    """Finish a multipart upload begun by ``uploads``: the blob appears whole, or not at all."""
    store = blobs_of(request.app.state.settings, project.name)
    key = validate_key(body.key)
    if not store.presigns:
        raise InvalidInput("this server's blob store takes uploads through the server only")
    presigned = cast(PresignedBlobs, store)  # presigns is true
    await run_in_threadpool(presigned.complete, key, body.upload_id, body.etags, body.size)
    return {"key": key}


@router.post("/downloads")
async def downloads(body: BlobList, request: Request, project: ProjectDep) -> dict[str, Any]:
    """A presigned URL for each blob asked for. The local directory answers which
    are ``missing``; an object store isn't asked (that is a request per blob): a
    missing one is the store's 404, which clients report as not stored."""
    store = blobs_of(request.app.state.settings, project.name)
    keys = list(dict.fromkeys(validate_key(k) for k in body.keys))
    if not store.presigns:
        missing = await run_in_threadpool(store.missing, keys)
        return {"direct": False, "urls": {}, "missing": missing}
    presigned = cast(PresignedBlobs, store)  # presigns is true
    urls = await run_in_threadpool(lambda: {k: presigned.download_url(k) for k in keys})
    return {"direct": True, "urls": urls, "missing": []}


@router.post("/verify")
async def verify(body: BlobList, request: Request, project: ProjectDep) -> dict[str, list[str]]:
    """Read these blobs and check them against their keys: a client that found one
    corrupt says so, and the store moves it aside (so a good copy can be put back)."""
    store = blobs_of(request.app.state.settings, project.name)
    keys = list(dict.fromkeys(validate_key(k) for k in body.keys))[:100]

    def corrupt() -> list[str]:
        found = []
        for key in keys:
            try:
                for _ in store.open_chunks(key):
                    pass
            except BlobError as e:
                if "corrupt" in str(e):
                    found.append(key)
        return found

    return {"corrupt": await run_in_threadpool(corrupt)}
