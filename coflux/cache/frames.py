"""Many blobs in one stream: how batches of blobs travel between machines and the server.

A batch is a sequence of frames, each a header (the blob's 32-character hex
key and its size as 8 bytes, big-endian) followed by its content. Sending a
thousand small files as one stream instead of a thousand requests is what
makes persisting and restoring a tree cost about as much as copying it.

``FrameReader`` splits a stream arriving in arbitrary pieces back into
blobs, validating every key before it is used (names are never paths).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

from ..errors import InvalidInput
from .keys import HASH_HEX_LENGTH, validate_key
from .store import BlobBatch, BlobWriter

HEADER_SIZE = HASH_HEX_LENGTH + 8


def header(key: str, size: int) -> bytes:
    return validate_key(key).encode("ascii") + size.to_bytes(8, "big")


class FrameReader:
    """Feed it the stream's pieces; it calls ``start(key, size)``, then ``data(piece)``
    for the content, then ``end()``, for each blob in turn."""

    def __init__(
        self,
        start: Callable[[str, int], None],
        data: Callable[[memoryview], None],
        end: Callable[[], None],
        max_size: int,
    ) -> None:
        self._start, self._data, self._end = start, data, end
        self._max_size = max_size
        self._header = bytearray()
        self._remaining: int | None = None  # None: between blobs

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        view = memoryview(chunk)
        while view:
            if self._remaining is None:
                need = HEADER_SIZE - len(self._header)
                self._header += view[:need]
                view = view[need:]
                if len(self._header) < HEADER_SIZE:
                    return
                try:
                    key = validate_key(self._header[:HASH_HEX_LENGTH].decode("ascii"))
                except UnicodeDecodeError:
                    raise InvalidInput("a batch frame whose key isn't hex") from None
                size = int.from_bytes(self._header[HASH_HEX_LENGTH:], "big")
                if size > self._max_size:
                    raise InvalidInput(f"blob {key} in the batch is over {self._max_size} bytes")
                self._header.clear()
                self._remaining = size
                self._start(key, size)
            take = view[: self._remaining]
            view = view[len(take) :]
            self._remaining -= len(take)
            if take:
                self._data(take)
            if self._remaining == 0:
                self._remaining = None
                self._end()

    def close(self) -> None:
        """The stream ended: it must not end inside a frame."""
        if self._header or self._remaining is not None:
            raise InvalidInput("the batch ended in the middle of a blob")


class BatchStore(Protocol):
    """What a batch is read from and written into: a local ``BlobStore``, or the
    server's blobs of a project (``ProjectBlobs``)."""

    def has(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def writer(self) -> BlobWriter: ...
    def open_chunks(self, key: str) -> Iterator[bytes]: ...


#: Blobs of a batch written into a local store are made durable together, up
#: to this many (each holds a descriptor until then) or this many bytes.
DURABLE_TOGETHER = 64
DURABLE_BYTES = 32 * 1024 * 1024


class IntoStore:
    """A ``FrameReader`` that writes each blob of a batch into ``store``, verified
    against its key (a blob already there is read past, untouched).

    Into a local store the verified blobs are fsynced and named together, a few
    dozen at a time and at ``close`` (``BlobBatch``): a blob is in ``stored``, and
    under its name, only once it is on disk. A failure keeps the blobs before it
    that were complete and verified, as writing them one by one would have."""

    def __init__(
        self,
        store: BatchStore,
        max_size: int,
        before_commit: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        #: Called before each group of sealed blobs is made durable and named
        #: (the server's failpoint ``blobs.before_batch_commit``).
        self._before_commit = before_commit
        self.stored: list[str] = []
        self._key: str | None = None
        self._writer: BlobWriter | None = None
        self._batch = BlobBatch()
        self.reader = FrameReader(self._start, self._data, self._end, max_size)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        try:
            self.reader.feed(chunk)
        except BaseException:
            self._drop_current()
            with contextlib.suppress(Exception):  # the first failure is the one told
                self._commit()
            raise

    def close(self) -> None:
        self.reader.close()
        self._commit()

    def abort(self) -> None:
        """Drop whatever is not yet committed (after a failure or an abandoned stream)."""
        self._drop_current()
        self._batch.abort()

    def _drop_current(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def _start(self, key: str, size: int) -> None:
        self._key = key
        self._writer = None if self.store.has(key) else self.store.writer()

    def _data(self, piece: memoryview) -> None:
        if self._writer is not None:
            self._writer.write(piece)

    def _end(self) -> None:
        assert self._key is not None
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        if not isinstance(writer, BlobWriter):  # another kind of store: one by one
            writer.commit(self._key)  # BlobError when the content isn't the key's
            self.stored.append(self._key)
            return
        self._batch.add(writer, self._key)  # BlobError when the content isn't the key's
        if len(self._batch) >= DURABLE_TOGETHER or self._batch.size >= DURABLE_BYTES:
            self._commit()

    def _commit(self) -> None:
        if self._before_commit is not None and len(self._batch):
            self._before_commit()
        self.stored.extend(writer.key for writer in self._batch.commit() if writer.key)


def frames(store: BatchStore, keys: list[str]) -> Iterator[bytes]:
    """The batch of ``keys``, read (and verified) from ``store``."""
    for key in keys:
        yield header(key, store.size(key))
        yield from store.open_chunks(key)


#: How much of a stream is handed to the writing thread at once.
WRITE_PIECE = 4 * 1024 * 1024


async def write_streamed(into: IntoStore, chunks: AsyncIterator[bytes]) -> None:
    """Receive a batch and write it at the same time: pieces of the stream go to a
    worker thread (hashing, writing, fsync) while the next ones arrive, instead of
    the socket waiting for the disk. The whole stream is read even after a failed
    write; the failure is raised at the end."""
    queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue(maxsize=4)

    def feed(piece: list[bytes]) -> None:
        for chunk in piece:
            into.feed(chunk)

    async def write() -> None:
        failure: BaseException | None = None
        while (piece := await queue.get()) is not None:
            if failure is None:
                try:
                    await asyncio.to_thread(feed, piece)
                except BaseException as e:  # raised once the stream is read
                    failure = e
        if failure is not None:
            raise failure
        into.close()

    writer = asyncio.create_task(write())
    # The chunks as received, never joined: copying them into one buffer cost
    # more than hashing them (a fresh buffer's pages are faulted in each time).
    pending: list[bytes] = []
    size = 0
    try:
        async for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= WRITE_PIECE:
                await queue.put(pending)
                pending, size = [], 0
        await queue.put(pending)
        await queue.put(None)
        await writer
    finally:
        if not writer.done():
            writer.cancel()
            into.abort()
