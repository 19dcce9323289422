"""Copying every blob from one store to another (``coflux server blobs migrate``).

Each blob is read verified from the source and written verified to the
destination (which refuses content that doesn't match the key), and one the
destination already holds is skipped, so running it again after an
interruption copies only what is left. A corrupt source blob is reported,
not copied. Nothing is deleted from the source: point the server at the new
store once the copy is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ....errors import BlobError
from . import BlobBackend


def migrate(
    source: BlobBackend,
    destination: BlobBackend,
    progress: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    copied = skipped = size = 0
    corrupt: list[str] = []
    for project in source.projects():
        src = source.project(project)
        dst = destination.project(project)
        keys = [k for k, _, _ in src.entries()]
        missing = set(dst.missing(keys))
        for key in keys:
            if key not in missing:
                skipped += 1
                continue
            try:
                writer = dst.writer()
                try:
                    for chunk in src.open_chunks(key):
                        writer.write(chunk)
                except BaseException:
                    writer.abort()
                    raise
                writer.commit(key)
            except BlobError as e:
                corrupt.append(f"{project}/{key}: {e}")
                continue
            copied += 1
            size += dst.size(key)
            if progress is not None:
                progress(project, key)
    return {
        "from": source.url,
        "to": destination.url,
        "copied": copied,
        "bytes": size,
        "already_there": skipped,
        "corrupt": corrupt,
    }
