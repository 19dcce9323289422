"""An agent's blob transfers with the server's store: uploads and downloads in batches.

Which blobs to move, and how: the server says (``POST .../blobs/uploads`` and
``.../downloads``). With a store that presigns, each blob goes directly
between this machine's store and the object store (``coflux.remote.transfers``),
``TRANSFERS_AT_ONCE`` batches of them at once; otherwise through the server, small
blobs together as one stream of frames (``coflux.cache.frames``). Either way a
download is verified against its key as it enters the machine's store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from ..cache import BlobStore
from ..cache.frames import IntoStore, frames, write_streamed
from ..errors import BlobError, CofluxError, ServerUnreachable
from ..remote import transfers
from ..remote.async_client import AsyncClient

T = TypeVar("T")

#: Blobs up to this size travel together in batches of up to BATCH_BYTES.
BATCH_BLOB = 8 * 1024 * 1024
BATCH_BYTES = 32 * 1024 * 1024
#: Batches in flight at once (measured with bench/assets.py: 3 beats 1 by a third).
TRANSFERS_AT_ONCE = 3
#: Blobs moved directly with the object store at once (each its own request).
DIRECT_AT_ONCE = 16


class BlobTransfers:
    def __init__(self, client: AsyncClient, store: BlobStore) -> None:
        self.client = client
        self.store = store
        #: For presigned URLs: without the project's token; used from threads.
        self.direct = httpx.Client(
            timeout=120, limits=httpx.Limits(max_connections=DIRECT_AT_ONCE * 2)
        )

    async def close(self) -> None:
        self.direct.close()

    async def upload_missing(
        self, keys: list[str], slots: asyncio.Semaphore | None = None
    ) -> tuple[int, int]:
        """Upload those of ``keys`` the server's store lacks; return how many blobs
        and bytes were sent."""
        if slots is None:
            slots = asyncio.Semaphore(TRANSFERS_AT_ONCE)
        keys = list(dict.fromkeys(keys))
        sizes = {k: self.store.size(k) for k in keys}
        try:
            answer = await self.client.upload_plans(sizes)
            missing = answer["missing"]
            if answer["direct"]:
                there = await self._put_direct(answer["uploads"], sizes, slots)
                missing = [k for k in missing if k not in there]
            else:
                await self._put_proxied(missing, slots)
        except httpx.HTTPError as e:  # with the object store, directly
            raise CofluxError(f"uploading blobs failed: {e}") from None
        except CofluxError as e:
            raise type(e)(f"uploading blobs failed: {e}") from None
        return len(missing), sum(sizes[k] for k in missing)

    async def _put_direct(
        self, plans: list[dict[str, Any]], sizes: dict[str, int], slots: asyncio.Semaphore
    ) -> set[str]:
        """Upload by the plans; return the keys the store turned out to have already."""

        # Moved by threads, off the event loop: measured on 1,000 blobs of 100 KB,
        # httpx's blocking client on 16 threads took half the time of its async one.
        def one(plan: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
            key = plan["key"]
            read = transfers.read_range(self.store, key, sizes[key])
            return plan, transfers.put_blob(self.direct, plan, read, sizes[key])

        def all_of() -> list[tuple[dict[str, Any], list[str] | None]]:
            with ThreadPoolExecutor(DIRECT_AT_ONCE, thread_name_prefix="coflux-put") as pool:
                return list(pool.map(one, plans))

        there: set[str] = set()
        for plan, etags in await asyncio.to_thread(all_of):
            if etags is None:
                there.add(plan["key"])
            elif etags:
                key = plan["key"]
                await self.client.complete_upload(key, plan["upload_id"], etags, sizes[key])
        return there

    async def _put_proxied(self, missing: list[str], slots: asyncio.Semaphore) -> None:
        async def send(batch: list[str]) -> None:
            async with slots:
                if len(batch) == 1:
                    await self.client.put_blob(batch[0], self._chunks(batch[0]))
                else:
                    await self.client.put_batch(self._frames(batch))

        batches = group(missing, self.store.size, BATCH_BYTES, alone_over=BATCH_BLOB)
        await asyncio.gather(*(send(b) for b in batches))

    async def _chunks(self, key: str) -> AsyncIterator[bytes]:
        for chunk in self.store.open_chunks(key):
            yield chunk
            await asyncio.sleep(0)  # let heartbeats through a long upload

    async def _frames(self, keys: list[str]) -> AsyncIterator[bytes]:
        for chunk in frames(self.store, keys):
            yield chunk
            await asyncio.sleep(0)

    async def download_all(self, keys: list[str], sizes: dict[str, int] | None = None) -> None:
        """Put every blob of ``keys`` in the local store, fetching what it lacks."""
        missing = [k for k in dict.fromkeys(keys) if not self.store.has(k)]
        if not missing:
            return
        try:
            answer = await self.client.download_urls(missing)
        except CofluxError as e:
            raise type(e)(f"downloading blobs failed: {e}") from None
        if answer["missing"]:
            raise CofluxError(
                f"downloading blobs failed: {len(answer['missing'])} blob(s) aren't on the "
                f"server (first: {answer['missing'][0]})"
            )
        if answer["direct"]:
            await self._get_direct(answer["urls"])
        else:
            await self._get_proxied(missing, sizes)

    async def _get_direct(self, urls: dict[str, str]) -> None:
        corrupt: list[str] = []

        def one(item: tuple[str, str]) -> None:
            key, url = item
            try:
                transfers.get_blob(self.direct, url, key, self.store.writer)
            except BlobError:
                corrupt.append(key)
                raise

        def all_of() -> None:
            with ThreadPoolExecutor(DIRECT_AT_ONCE, thread_name_prefix="coflux-get") as pool:
                list(pool.map(one, urls.items()))

        try:
            await asyncio.to_thread(all_of)
        except BlobError as e:
            # The store moves it aside, so an upload can put a good copy back.
            await self.client.report_corrupt(corrupt)
            raise CofluxError(f"a blob from the server is corrupt: {e}") from None
        except CofluxError as e:
            raise CofluxError(f"downloading blobs failed: {e}") from None

    async def _get_proxied(self, missing: list[str], sizes: dict[str, int] | None) -> None:
        batches = group(
            missing,
            lambda k: (sizes or {}).get(k, BATCH_BYTES // 1000),
            BATCH_BYTES,
            alone_over=BATCH_BLOB,
        )
        slots = asyncio.Semaphore(TRANSFERS_AT_ONCE)

        async def fetch(batch: list[str]) -> None:
            into = IntoStore(self.store, 1 << 40)
            try:
                async with slots, self.client.fetch_blobs(batch) as response:
                    await write_streamed(into, response.aiter_bytes())
            except httpx.HTTPError as e:
                raise ServerUnreachable(f"downloading blobs failed: {e}") from None
            except BlobError as e:
                raise CofluxError(f"a blob from the server is corrupt: {e}") from None
            except CofluxError as e:
                raise type(e)(f"downloading blobs failed: {e}") from None
            finally:
                into.abort()

        await asyncio.gather(*(fetch(b) for b in batches))


def group(
    items: list[T],
    size_of: Callable[[T], int],
    limit: int,
    most: int = 1000,
    alone_over: int | None = None,
) -> list[list[T]]:
    """Consecutive items in batches of at most ``limit`` in size and ``most`` in
    number; an item over ``alone_over`` (or over ``limit``) makes a batch alone."""
    batches: list[list[T]] = []
    current: list[T] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if alone_over is not None and item_size > alone_over:
            batches.append([item])
            continue
        if current and (size + item_size > limit or len(current) == most):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        batches.append(current)
    return batches
