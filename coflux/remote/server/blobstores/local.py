"""Blobs in a local directory, one content-addressed store per project (the default).

The layout and promises are ``coflux.cache.store``'s; this adds what the server
needs of any store (``missing``, ``entries``). It can't presign: the server
carries the bytes of every transfer itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ....cache import BlobStore


class LocalBlobs(BlobStore):
    presigns = False

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in keys if not self.has(k)]

    def entries(self) -> Iterator[tuple[str, int, float]]:
        """(key, size, modified) of every blob."""
        for key in self.keys():
            with contextlib.suppress(FileNotFoundError):
                info = self.path(key).stat()
                yield key, info.st_size, info.st_mtime


class LocalBackend:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root.absolute()}"

    def project(self, name: str) -> LocalBlobs:
        return LocalBlobs(self.root / name)

    def projects(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())
