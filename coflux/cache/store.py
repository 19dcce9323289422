"""The content-addressed blob store on a local disk.

One store serves each project on the server, and one each machine (``.coflux/cas``).
A blob is named by the xxh3-128 digest of its content and lives at
``root/ab/cd/abcd…``. This module owns that layout and its two promises:

* A final name never holds partial content. Every write goes to a temporary file
  of its own in ``root/tmp``, is flushed and fsynced, then renamed into place, so
  concurrent writers of one blob (threads or processes) each rename a complete,
  identical copy, and a failed write (a full disk, a file-size limit, a wrong
  expected key) leaves neither a temporary nor a final file behind.
* Content that doesn't match its name is never served. Every read verifies the
  digest; a mismatch moves the file to ``root/quarantine/<key>.<timestamp>`` and
  raises ``BlobError``.

Blobs written together can be made durable together (``BlobBatch``): each is
verified and its writeback started, then all are fsynced, then renamed: the disk
is waited for about once per batch, and nothing is named before it is on disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import time
import uuid
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

from ..errors import BlobError, InvalidInput
from .keys import Hasher, hash_bytes, validate_key
from .writeback import start_writeback

#: How much a streaming read or write holds in memory at once.
CHUNK_SIZE = 1024 * 1024

# Temporary files untouched for this long belong to no live writer: a write keeps
# touching its file until it renames it, and none stalls for an hour.
_STALE_AFTER = 3600.0

_HEX = frozenset("0123456789abcdef")

_Chunk: TypeAlias = bytes | bytearray | memoryview


class BlobStore:
    """Blobs on the local disk under ``root``, named by their content's xxh3-128 digest.

    ``root`` is created on the first write. Every method that takes a key validates
    it first (``InvalidInput``) and never builds a path from an unvalidated key.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._quarantine = self.root / "quarantine"
        self._tmp_ready = False

    # --- Names ---

    def path(self, key: str) -> Path:
        """Where the blob ``key`` lives (or would live); doesn't check that it exists."""
        validate_key(key)
        return self.root / key[:2] / key[2:4] / key

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        """The blob's size in bytes; ``BlobError`` if it isn't in the store."""
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise _missing(key) from None

    # --- Writing ---

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its key."""
        key = hash_bytes(data)
        if _holds(self.path(key), len(data)):
            return key
        return self._write([data])

    def put_file(self, path: Path) -> str:
        """Store a copy of the file at ``path`` and return its key, in bounded memory."""
        with open(path, "rb") as f:
            return self._write(_read_into(f))

    def put_stream(self, chunks: Iterable[bytes], expected_key: str | None = None) -> str:
        """Store the concatenation of ``chunks`` and return its key.

        With ``expected_key``, content that hashes to anything else raises ``BlobError``
        and leaves nothing behind.
        """
        if expected_key is not None:
            validate_key(expected_key)
        return self._write(chunks, expected_key)

    def _write(self, chunks: Iterable[_Chunk], expected_key: str | None = None) -> str:
        writer = self.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit(expected_key)

    def writer(self) -> BlobWriter:
        """A blob written piece by piece (for streams that arrive asynchronously):
        ``write`` chunks, then ``commit`` (or ``abort``)."""
        if not self._tmp_ready:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._tmp_ready = True
        try:
            return BlobWriter(self)
        except FileNotFoundError:  # the folder was removed under us
            self._tmp.mkdir(parents=True, exist_ok=True)
            return BlobWriter(self)

    def put_file_pieces(
        self,
        path: Path,
        piece_size: int,
        created: list[str] | None = None,
        batch: BlobBatch | None = None,
    ) -> list[str]:
        """Store the file at ``path`` as blobs of at most ``piece_size`` bytes each
        (none for an empty file), in bounded memory; return their keys in order.

        The keys of blobs that weren't in the store before are appended to ``created``.
        With ``batch``, each piece is only sealed into it: named once the batch is
        committed (and ``created`` is then the committer's to fill).
        """
        keys: list[str] = []
        writer: BlobWriter | None = None

        def finish(writer: BlobWriter) -> None:
            if batch is not None:
                keys.append(batch.add(writer))
                return
            keys.append(writer.commit())
            if writer.created and created is not None:
                created.append(keys[-1])

        try:
            with open(path, "rb") as f:
                for chunk in _read_into(f):
                    while chunk:
                        if writer is None:
                            writer = self.writer()
                        room = piece_size - writer.size
                        writer.write(chunk[:room])
                        chunk = chunk[room:]
                        if writer.size == piece_size:
                            finish(writer)
                            writer = None
            if writer is not None:
                finish(writer)
                writer = None
        finally:
            if writer is not None:
                writer.abort()
        return keys

    # --- Reading ---

    def get_bytes(self, key: str) -> bytes:
        """The blob's content, verified; ``BlobError`` if it is missing or corrupt."""
        final = self.path(key)
        try:
            with open(final, "rb") as f:
                read = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            raise _missing(key) from None
        if hash_bytes(data) != key:
            raise self._corrupt(key, read)
        return data

    def open_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Generator[bytes, None, None]:
        """Stream the blob in chunks of up to ``chunk_size`` bytes.

        A missing blob raises ``BlobError`` here, before any chunk. Corruption can only
        be known once every byte is read, so it raises ``BlobError`` after the last
        chunk (and quarantines the file): a consumer must treat everything it received
        as garbage if iteration ends in an error.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        final = self.path(key)
        if not final.is_file():
            raise _missing(key)
        # The file is opened on the first chunk, so an iterator never started holds nothing open.
        return self._chunks(key, final, chunk_size)

    def _chunks(self, key: str, final: Path, chunk_size: int) -> Generator[bytes, None, None]:
        try:
            f = open(final, "rb")  # noqa: SIM115 - closed by the with below, across yields
        except FileNotFoundError:
            raise _missing(key) from None
        with f:
            read = os.fstat(f.fileno())
            hasher = Hasher()
            while chunk := f.read(chunk_size):
                hasher.update(chunk)
                yield chunk
        if hasher.hexdigest() != key:
            raise self._corrupt(key, read)

    def copy_to(self, key: str, dest: Path) -> None:
        """Write the blob's verified content to ``dest``, which never holds partial content."""
        dest = Path(dest)
        chunks = self.open_chunks(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Next to dest so the final rename stays on one filesystem.
        temp, fd = _create_temp(dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part"))
        try:
            try:
                with contextlib.closing(chunks):
                    for chunk in chunks:
                        _write_all(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, dest)
        except BaseException:
            _remove(temp)
            raise

    def _corrupt(self, key: str, read: os.stat_result) -> BlobError:
        final = self.path(key)
        # Move the file only if it is still the one that was read: a concurrent writer
        # may have just renamed a good copy over it. Failing to move it changes nothing
        # for the caller, who is told of the corruption either way.
        with contextlib.suppress(OSError):
            current = os.stat(final)
            if (current.st_dev, current.st_ino) == (read.st_dev, read.st_ino):
                self._quarantine.mkdir(parents=True, exist_ok=True)
                os.replace(final, self._quarantine / f"{key}.{time.time_ns()}")
        return BlobError(f"blob {key} is corrupt: its content does not match its name")

    # --- Housekeeping ---

    def delete(self, key: str) -> None:
        """Remove the blob; removing one that isn't there is not an error."""
        self.path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        """The key of every blob in the store, in sorted order; stray files are ignored."""
        for first in _entries(self.root):
            if not _is_shard(first.name):
                continue
            for second in _entries(first.path):
                if not _is_shard(second.name):
                    continue
                prefix = first.name + second.name
                for blob in _entries(second.path):
                    if blob.name.startswith(prefix) and _is_key(blob.name) and blob.is_file():
                        yield blob.name

    def total_size(self) -> int:
        """The sum of every blob's size in bytes."""
        total = 0
        for key in self.keys():
            # A blob deleted while we walk simply no longer counts.
            with contextlib.suppress(FileNotFoundError):
                total += self.path(key).stat().st_size
        return total

    def clean_temp(self, older_than: float = _STALE_AFTER) -> int:
        """Remove temporary files left by interrupted writes; returns how many were removed.

        Only files not modified for ``older_than`` seconds go, so a writer in another
        process sharing this store keeps its file; pass ``0`` when no writer can be live.
        """
        cutoff = time.time() - older_than
        removed = 0
        for entry in _entries(self._tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime <= cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed


class BlobWriter:
    """One blob being written to a temporary file of its own; see ``BlobStore.writer``."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._temp, self._fd = _create_temp(store._tmp / f"{uuid.uuid4().hex}.part")
        self._hasher = Hasher()
        self.size = 0
        self._committed = False
        #: After ``commit``: whether the blob is new (False if it was already stored).
        self.created = False
        #: After ``seal`` or ``commit``: the content's key.
        self.key: str | None = None
        self._synced = False

    def write(self, chunk: _Chunk) -> None:
        try:
            self._hasher.update(chunk)
            _write_all(self._fd, chunk)
        except BaseException:
            self.abort()
            raise
        self.size += len(chunk)

    def abort(self) -> None:
        """Drop what was written; nothing is left behind (a no-op after ``commit``)."""
        if self._committed:
            return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        _remove(self._temp)

    def commit(self, expected_key: str | None = None) -> str:
        """Move the content to its final name and return its key.

        With ``expected_key``, content that hashes to anything else raises
        ``BlobError`` and leaves nothing behind.
        """
        key = self.seal(expected_key, early_writeback=False)
        self._sync()
        self._name()
        return key

    def seal(self, expected_key: str | None = None, early_writeback: bool = True) -> str:
        """Check the content against ``expected_key`` and return its key, without
        waiting for the disk or naming it (``BlobBatch`` does both); the disk is
        told to start writing it now."""
        try:
            key = self._hasher.hexdigest()
            if expected_key is not None and key != expected_key:
                raise BlobError(f"content does not match key {expected_key}: it hashes to {key}")
            if early_writeback:
                start_writeback(self._fd)
        except BaseException:
            self.abort()
            raise
        self.key = key
        return key

    def _sync(self) -> None:
        """Put the content on disk, unless the store holds the blob already: a copy
        that is only unlinked never needs to reach the disk (a re-persist of an
        unchanged tree writes nothing durably)."""
        try:
            if not self._synced and not _holds(self._store.path(self.key or ""), self.size):
                os.fsync(self._fd)
                self._synced = True
        except BaseException:
            self.abort()
            raise

    def _name(self) -> None:
        assert self.key is not None, "sealed first"
        try:
            final = self._store.path(self.key)
            if _holds(final, self.size):
                # Already stored: the existing file keeps its inode and mtime.
                os.close(self._fd)
                self._fd = -1
                os.unlink(self._temp)
            else:
                if not self._synced:  # the stored copy went meanwhile: this one is named
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
                try:
                    os.replace(self._temp, final)
                except FileNotFoundError:  # the first blob of its shard
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self._temp, final)
                # The directory isn't fsynced: after a crash the rename may be lost,
                # leaving the blob absent (and replaceable), never partial (I6).
                self.created = True
        except BaseException:
            self.abort()
            raise
        self._committed = True


class BlobBatch:
    """Sealed blobs made durable and named together by ``commit``: each is fsynced
    (their writeback was started as each was sealed, so the fsyncs mostly find
    their data on disk and share one journal commit), then renamed into place."""

    def __init__(self) -> None:
        self._sealed: list[BlobWriter] = []
        #: Bytes sealed and not yet committed.
        self.size = 0

    def __len__(self) -> int:
        return len(self._sealed)

    def add(self, writer: BlobWriter, expected_key: str | None = None) -> str:
        """Seal ``writer`` into the batch (``BlobError`` on a mismatch, leaving nothing)."""
        key = writer.seal(expected_key)
        self._sealed.append(writer)
        self.size += writer.size
        return key

    def commit(self) -> list[BlobWriter]:
        """Fsync every sealed blob, then name each; return them (``key``, ``created``).
        A failure leaves none of the ones not yet named behind."""
        sealed, self._sealed, self.size = self._sealed, [], 0
        try:
            for writer in sealed:
                writer._sync()
            for writer in sealed:
                writer._name()
        except BaseException:
            for writer in sealed:
                writer.abort()
            raise
        return sealed

    def absorb(self, other: BlobBatch) -> None:
        """Take over ``other``'s sealed blobs, to be committed with these."""
        self._sealed += other._sealed
        self.size += other.size
        other._sealed, other.size = [], 0

    def abort(self) -> None:
        """Drop every sealed blob not yet committed."""
        sealed, self._sealed, self.size = self._sealed, [], 0
        for writer in sealed:
            writer.abort()


def _missing(key: str) -> BlobError:
    return BlobError(f"blob {key} is not in the store")


def _holds(final: Path, size: int) -> bool:
    """Whether ``final`` is already a stored blob of ``size`` bytes.

    A size mismatch means a damaged file, which the caller replaces; a same-size
    corruption is caught by the next verified read.
    """
    try:
        info = os.stat(final)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def _create_temp(path: Path) -> tuple[Path, int]:
    # O_EXCL with a random name: no two writers ever share a temporary file.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return path, os.open(path, flags, 0o666)


def _write_all(fd: int, data: _Chunk) -> None:
    # os.write may write less than asked, notably just before a disk or size limit.
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _read_into(f: io.BufferedIOBase) -> Iterator[memoryview]:
    # One reused buffer keeps memory flat however large the file; each view is
    # consumed before the next read overwrites it.
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    while n := f.readinto(buffer):
        yield view[:n]


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _entries(path: Path | str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_shard(name: str) -> bool:
    return len(name) == 2 and set(name) <= _HEX


def _is_key(name: str) -> bool:
    try:
        validate_key(name)
    except InvalidInput:
        return False
    return True
