"""Whether the server's copy of a blob is there and intact, before it is relied on.

Two places rely on it: a cached result is reused only if the blobs of its
value are (else the step executes again: a lost blob is a cache miss, never a
poisoned cache), and a batch of blobs is streamed only once each is known
intact (a corrupt one is answered with a JSON error before the first byte,
never a response aborted midway).

Blobs are named by their content and never rewritten, so each file is
verified (read and hashed) once per server process, and again only if it
changed since (its inode, size or modification time: an overwrite, a copy
put back). Streaming still verifies as it goes, so decay that leaves the file
looking the same is never passed on as good content either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import BlobError
from .blobstores import ProjectBlobs

#: Blob files verified by this process: (inode, size, mtime) by path
#: (bounded: a forgotten one is only verified again).
_VERIFIED: dict[Path, tuple[int, int, int]] = {}
_MAX_REMEMBERED = 100_000


def intact(store: ProjectBlobs, key: str) -> str | None:
    """None if ``store`` holds ``key`` intact; else why not (a corrupt file is
    quarantined by the read, so it is missing from then on).

    In object storage only the object's presence is checked here: reading it
    whole for each check would cost a download, and every reader verifies it
    (and quarantines a mismatch) anyway."""
    path_of = getattr(store, "path", None)
    if path_of is None:
        return None if store.has(key) else f"blob {key} isn't in the blob store"
    path = path_of(key)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return f"blob {key} isn't on the server"
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(path) == version:
        return None
    try:
        for _ in store.open_chunks(key):
            pass
    except BlobError as e:
        return str(e)
    if len(_VERIFIED) >= _MAX_REMEMBERED:
        _VERIFIED.clear()
    _VERIFIED[path] = version
    return None


def lost_blob(store: ProjectBlobs, value: dict[str, Any] | None) -> str | None:
    """Why the blob a stored value is in can't be read, or None if it can (or
    the value is inline)."""
    key = (value or {}).get("blob")
    if not isinstance(key, str):
        return None
    return intact(store, key)
