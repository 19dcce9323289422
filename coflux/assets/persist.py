"""Persisting files into the local store: a file, a directory (filtered), or a whole folder.

Files are read once, streamed into the store in pieces while they are hashed,
so memory stays at a few MiB however large they are. A few files are stored at
once (``FILES_AT_ONCE`` threads). Their blobs are sealed as they are written
(verified, writeback started) and made durable and named together, a group
of about ``DURABLE_BYTES`` at a time (``BlobBatch``): the disk is waited for
once per group instead of once per file. Only then are a group's files handed
on for upload, so nothing is uploaded before it is durable here. Symbolic
links are refused rather than followed (a link could reach anything on the
machine, and a recorded link could later point a restore outside its
target); so are sockets, pipes and devices. A failed write (a full disk) leaves no blob
behind, and the error names the file.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..cache import BlobStore
from ..cache.store import BlobBatch
from ..errors import AssetError
from .manifest import PIECE_SIZE, Entry, encode

#: Files stored at once (measured with bench/assets.py: 512 MiB over 500 files
#: took 1.37 s one at a time, 0.9 s four at a time, on the 2-core machine).
FILES_AT_ONCE = 4
#: Sealed blobs made durable together: up to this many bytes or blobs (each
#: holds a descriptor until then).
DURABLE_BYTES = 16 * 1024 * 1024
DURABLE_BLOBS = 64


class _Groups:
    """The files the storing threads have written, made durable and named a group
    at a time; each group's entries then go to ``on_stored``."""

    def __init__(
        self, name: str, created: list[str], on_stored: Callable[[Entry], None] | None
    ) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._batch = BlobBatch()
        self._entries: list[Entry] = []
        self._created = created
        self._on_stored = on_stored

    def add(self, entry: Entry, sealed: BlobBatch) -> None:
        with self._lock:
            self._batch.absorb(sealed)
            self._entries.append(entry)
            if self._batch.size >= DURABLE_BYTES or len(self._batch) >= DURABLE_BLOBS:
                self._commit()

    def finish(self) -> None:
        with self._lock:
            self._commit()

    def abort(self) -> None:
        with self._lock:
            self._batch.abort()

    def _commit(self) -> None:
        try:
            written = self._batch.commit()
        except OSError as e:
            raise AssetError(f"can't persist {self._name}: {_reason(e)}") from None
        self._created.extend(w.key for w in written if w.created and w.key)
        entries, self._entries = self._entries, []
        if self._on_stored is not None:
            for entry in entries:
                self._on_stored(entry)


def persist(
    store: BlobStore,
    base: Path,
    path: str | os.PathLike[str] | None,
    match: str | None,
    on_stored: Callable[[Entry], None] | None = None,
) -> tuple[str, list[Entry], str]:
    """Store ``path`` (relative to ``base``; the whole of ``base`` when None).

    Return the asset's manifest key, its entries, and the name it was persisted
    under (the path as given, or ``.``). ``on_stored`` is called with each
    file's entry as soon as its blobs are in the store (from the storing
    threads), so they can be uploaded while the rest are stored.
    """
    name = "." if path is None else os.fspath(path)
    source = base / name
    try:
        info = os.lstat(source)
    except FileNotFoundError:
        raise AssetError(f"can't persist {name}: no such file or directory") from None
    if stat.S_ISLNK(info.st_mode):
        raise AssetError(f"can't persist {name}: it is a symbolic link")
    if stat.S_ISREG(info.st_mode):
        if match is not None and not _matches(source.name, match):
            files = []
        else:
            files = [(source.name, source)]
    elif stat.S_ISDIR(info.st_mode):
        files = _walk(source, name, match)
    else:
        raise AssetError(f"can't persist {name}: it is not a file or a directory")
    created: list[str] = []
    groups = _Groups(name, created, on_stored)

    def store_file(file: tuple[str, Path]) -> Entry:
        sealed = BlobBatch()
        try:
            entry = _store_file(store, file[0], file[1], name, sealed)
        except BaseException:
            sealed.abort()
            raise
        groups.add(entry, sealed)
        return entry

    try:
        if len(files) < 2:
            entries = [store_file(file) for file in files]
        else:
            pool = ThreadPoolExecutor(FILES_AT_ONCE, thread_name_prefix="coflux-persist")
            try:
                entries = list(pool.map(store_file, files))
            finally:
                # After a failure, files not yet begun aren't stored at all.
                pool.shutdown(cancel_futures=True)
        groups.finish()
    except AssetError:
        groups.abort()
        # Give back the space this attempt took (a full disk is the usual cause);
        # blobs that were already stored stay.
        for blob in created:
            store.delete(blob)
        raise
    key = store.put_bytes(encode(entries, file=stat.S_ISREG(info.st_mode)))
    return key, sorted(entries, key=lambda e: e.path), name


def _walk(root: Path, name: str, match: str | None) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for directory, subdirectories, filenames in os.walk(root, followlinks=False):
        subdirectories.sort()
        here = Path(directory)
        for child in sorted(subdirectories + filenames):
            full = here / child
            relative = full.relative_to(root).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise AssetError(
                    f"can't persist {name}: {relative} is a symbolic link "
                    f"(to {os.readlink(full)!r}); links aren't followed or recorded"
                )
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise AssetError(f"can't persist {name}: {relative} is not a regular file")
            if match is None or _matches(relative, match):
                found.append((relative, full))
    return found


def _matches(relative: str, pattern: str) -> bool:
    """Like .gitignore: a pattern without '/' matches file names at any depth;
    one with '/' matches the whole relative path ('*' crossing directories)."""
    if "/" not in pattern:
        return fnmatch.fnmatchcase(relative.rpartition("/")[2], pattern)
    return fnmatch.fnmatchcase(relative, pattern.lstrip("/"))


def _reason(e: OSError) -> str:
    return "No space left on device" if e.errno == errno.ENOSPC else str(e.strerror)


def _store_file(store: BlobStore, relative: str, full: Path, name: str, sealed: BlobBatch) -> Entry:
    try:
        mode = os.stat(full).st_mode & 0o777
        blobs = store.put_file_pieces(full, PIECE_SIZE, batch=sealed)
        size = os.stat(full).st_size
    except OSError as e:
        raise AssetError(f"can't persist {name}: {relative}: {_reason(e)}") from None
    if len(blobs) != -(-size // PIECE_SIZE):
        raise AssetError(f"can't persist {name}: {relative} changed while it was read")
    return Entry(relative, mode, size, tuple(blobs))
