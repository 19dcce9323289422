"""An agent's blobs and assets: uploading what its executions made, fetching what they read.

A result's or argument's blob is uploaded before the message that names it
is sent (the server never holds a reference to a blob it lacks). An asset
being persisted is uploaded in groups while the execution still stores it
(``begin_upload``); ``persist_asset`` then waits for those, uploads the
rest and records the asset. How blobs move is ``blob_transfers``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..assets import blob_keys, decode
from ..assets.manifest import is_file, piece_sizes
from ..cache import BlobStore
from ..errors import CofluxError
from ..records.values import Value
from ..remote.async_client import AsyncClient
from .agent_index import IndexBuffer
from .blob_transfers import TRANSFERS_AT_ONCE, BlobTransfers

log = logging.getLogger("coflux.agent")


class AgentAssets:
    def __init__(self, http: AsyncClient, store: BlobStore, index: IndexBuffer) -> None:
        self.http = http
        self.store = store
        self.index = index
        self.transfers = BlobTransfers(http, store)
        #: Uploads begun while an execution persists an asset, by execution.
        self._uploads: dict[str, list[asyncio.Future[tuple[int, int]]]] = {}
        #: Transfers in flight at once for the uploads begun while persisting
        #: (each other upload or download has slots of its own).
        self._asset_uploads = asyncio.Semaphore(TRANSFERS_AT_ONCE)
        #: The keys those uploads cover, by execution.
        self._uploaded: dict[str, set[str]] = {}

    async def close(self) -> None:
        await self.transfers.close()

    async def upload(self, value: Value) -> None:
        if value.blob is not None:
            await self.transfers.upload_missing([value.blob])
            self.index.add({"kind": "result", "key": value.blob, "blobs": [value.blob]})

    def begin_upload(self, execution_id: str, keys: list[str]) -> asyncio.Future[tuple[int, int]]:
        """Blobs of an asset being persisted: upload them now, while the
        execution stores the rest (``persist_asset`` waits for these)."""
        task = asyncio.ensure_future(self.transfers.upload_missing(keys, self._asset_uploads))
        self._uploads.setdefault(execution_id, []).append(task)
        self._uploaded.setdefault(execution_id, set()).update(keys)
        return task

    def forget(self, execution_id: str) -> None:
        """The execution ended without recording the asset it was persisting
        (it failed meanwhile): its uploads finish, and a failure is only logged."""
        self._uploaded.pop(execution_id, None)
        for task in self._uploads.pop(execution_id, []):
            task.add_done_callback(_log_failure)

    async def download(self, key: str) -> None:
        """Put the blob ``key`` in the local store (from the server unless it's there)."""
        await self.transfers.download_all([key])

    async def persist_asset(self, params: dict[str, Any]) -> dict[str, Any]:
        """Share an asset the execution put in the store: its blobs, then its record."""
        key = params["key"]
        started = time.monotonic()
        manifest = self.store.get_bytes(key)
        entries = decode(manifest)
        early = await asyncio.gather(*self._uploads.pop(params["execution_id"], []))
        # What the early uploads covered is stored (they succeeded): only the rest
        # is checked again (each check is a request to the store per blob).
        done = self._uploaded.pop(params["execution_id"], set())
        rest = [k for k in [*blob_keys(entries), key] if k not in done]
        blobs, sent = await self.transfers.upload_missing(rest)
        blobs += sum(n for n, _ in early)
        sent += sum(size for _, size in early)
        body: dict[str, Any] = {
            "execution": params["execution_id"],
            "path": params["path"],
            "entries": [e.to_dict() for e in entries],
        }
        if is_file(manifest):
            body["kind"] = "file"
        try:
            recorded = await self.http.record_asset(body)
        except CofluxError as e:
            raise type(e)(f"recording asset {params['path']} failed: {e}") from None
        self.index.add_asset(key, entries, params["path"])
        log.info(
            "asset a:%s (%s, %d files, %d bytes) persisted by %s in %.2fs: "
            "uploaded %d blob(s), %d bytes",
            key,
            params["path"],
            len(entries),
            sum(e.size for e in entries),
            params["execution_id"],
            time.monotonic() - started,
            blobs,
            sent,
        )
        return recorded

    async def fetch_asset(self, key: str) -> dict[str, Any]:
        """Fill the store with an asset's manifest and whatever of its blobs it lacks."""
        await self.download(key)
        entries = decode(self.store.get_bytes(key))
        sizes = {k: n for e in entries for k, n in zip(e.blobs, piece_sizes(e), strict=True)}
        await self.transfers.download_all(list(sizes), sizes)
        self.index.add_asset(key, entries, None)
        return {}


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s", task.exception())
