"""Where a server keeps its projects' blobs: the local directory or object storage.

``--blob-store`` (``COFLUX_BLOB_STORE``, ``blob_store`` in ``.coflux.toml``)
names the store by URL:

* none, or ``file://PATH``: blobs in ``--data-dir/blobs/PROJECT`` (or
  ``PATH/PROJECT``), the content-addressed store of ``coflux.cache``;
* ``s3://BUCKET/PREFIX``: objects ``PREFIX/PROJECT/ab/KEY`` in an
  S3-compatible bucket, with the endpoint, region and credentials read the
  standard AWS way (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
  ``~/.aws/config``, ...).

Both stores give a project's blobs the same methods (``has``, ``size``,
``missing``, ``writer``, ``put_bytes``, ``get_bytes``, ``open_chunks``,
``delete``, ``entries``) and the same promises: a blob is named by the
xxh3-128 hash of its content, verified on every read (a mismatch is moved
aside and reported), and never visible under its name half-written. A store
that can presign (``presigns``) lets agents and the CLI move bytes to and from
it directly; the server then only authorises each transfer.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ....errors import CofluxError, ConfigError


class StoreUnavailable(CofluxError):
    """The blob store can't be reached or refused the server: nothing was stored."""

    status_code = 503
    code = "blob_store_unavailable"


class ProjectBlobs(Protocol):
    """One project's blobs in a store (see the module's docstring)."""

    #: Whether transfers can go directly between clients and the store.
    presigns: bool

    def has(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def missing(self, keys: list[str]) -> list[str]: ...
    def writer(self) -> Any: ...
    def put_bytes(self, data: bytes) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open_chunks(self, key: str) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...
    def entries(self) -> Iterator[tuple[str, int, float]]: ...


class PresignedBlobs(ProjectBlobs, Protocol):
    """A store whose ``presigns`` is true: transfers go directly to it, by URL."""

    #: Blobs up to this size are offered without being checked first (their
    #: upload plans store them only if absent).
    unchecked_size: int

    def download_url(self, key: str) -> str: ...
    def upload_plan(self, key: str, size: int) -> dict[str, Any]: ...
    def complete(self, key: str, upload_id: str, etags: list[str], size: int) -> None: ...


class BlobBackend(Protocol):
    #: The store's URL, for messages (``file://...`` or ``s3://...``).
    url: str

    def project(self, name: str) -> ProjectBlobs: ...
    def projects(self) -> list[str]: ...


def open_blob_store(url: str | None, data_dir: Path) -> BlobBackend:
    """The store ``url`` names (see the module's docstring); ``ConfigError`` for a
    URL that names none."""
    if not url:
        from .local import LocalBackend

        return LocalBackend(Path(data_dir) / "blobs")
    if url.startswith("file://"):
        from .local import LocalBackend

        return LocalBackend(Path(url[len("file://") :]))
    if url.startswith("s3://"):
        from .s3 import S3Backend

        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"blob store {url!r} names no bucket: use s3://BUCKET/PREFIX")
        return S3Backend(bucket, prefix.strip("/"), Path(data_dir) / "tmp")
    raise ConfigError(
        f"blob store {url!r} is not a store: use s3://BUCKET/PREFIX or file:///PATH "
        "(or leave it out for --data-dir/blobs)"
    )


@functools.cache
def _cached(url: str | None, data_dir: Path) -> BlobBackend:
    return open_blob_store(url, data_dir)


def blobs_of(settings: Any, project: str) -> ProjectBlobs:
    """The blobs of ``project`` in the store the server's ``settings`` name."""
    return _cached(settings.blob_store, Path(settings.data_dir)).project(project)
