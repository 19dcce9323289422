"""Assets from the command line: list a run's, show one, restore one.

A restore reads the local store first: when it holds the manifest and every
blob, the server isn't asked (it may be unreachable). Otherwise the missing
blobs are downloaded into the store (each verified against its name), then
restored from there. A local blob found corrupt is quarantined and fetched
again from the server, with a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

from ..assets import PREFIX, Entry, blob_keys, decode, parse_reference, restore
from ..assets.manifest import piece_sizes
from ..cache import BlobStore
from ..cache.frames import IntoStore
from ..errors import AssetError, BlobError
from ..remote.client import Client
from . import index
from .config import Config

#: Blobs downloaded at once from an object store (each its own request).
DIRECT_AT_ONCE = 16

#: Called with ("downloading" or "restoring", bytes done, bytes total).
Progress = Callable[[str, int, int], None]


def restore_asset(
    config: Config,
    ref: str,
    to: Path,
    force: bool,
    client: Callable[[], AbstractContextManager[Client]],
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Restore ``ref`` into ``to``; ``client`` opens the server only when needed."""
    key = parse_reference(ref)
    store = BlobStore(config.data_dir / "cas")
    entries = _local_entries(store, key)
    source = "local"
    with ExitStack() as opened:
        server: Client | None = None
        if entries is None or not all(store.has(k) for k in blob_keys(entries)):
            server = opened.enter_context(client())
            entries = _fetch(server, store, key, progress)
            source = "server"
        total = sum(e.size for e in entries)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress("restoring", done[0], total)

        try:
            restore(store, entries, to, force, advance)
        except AssetError as e:
            if "is corrupt" not in str(e) and "not in the store" not in str(e):
                raise
            # A local copy went bad: it was quarantined; fetch it again and retry once.
            if warn is not None:
                warn(f"warning: {e}; fetching it again from the server")
            server = server or opened.enter_context(client())
            _fetch(server, store, key, None)
            done[0] = 0
            restore(store, entries, to, force, advance)
            source = "server"
    index.record(
        config.data_dir,
        [
            {
                "environment": config.environment or "",
                "kind": "asset",
                "key": key,
                "blobs": [key, *blob_keys(entries)],
                "files": len(entries),
                "size": sum(e.size for e in entries),
            }
        ],
    )
    return {
        "ref": f"{PREFIX}{key}",
        "to": str(Path(to).absolute()),
        "files": len(entries),
        "size": sum(e.size for e in entries),
        "from": source,
    }


def show_asset(
    config: Config, ref: str, client: Callable[[], AbstractContextManager[Client]]
) -> dict[str, Any]:
    """An asset's files: from the local store when it has the manifest, else the server."""
    key = parse_reference(ref)
    entries = _local_entries(BlobStore(config.data_dir / "cas"), key)
    if entries is None:
        with client() as server:
            return server.get_asset(f"{PREFIX}{key}")
    return {
        "ref": f"{PREFIX}{key}",
        "files": len(entries),
        "size": sum(e.size for e in entries),
        "entries": [e.to_dict() for e in entries],
    }


def _local_entries(store: BlobStore, key: str) -> list[Entry] | None:
    try:
        return decode(store.get_bytes(key))
    except BlobError:
        return None


def _fetch(server: Client, store: BlobStore, key: str, progress: Progress | None) -> list[Entry]:
    """Put the manifest and every blob of an asset in the store; return its entries."""
    fetch_into(server, store, [key])
    entries = decode(store.get_bytes(key))
    sizes = {k: n for e in entries for k, n in zip(e.blobs, piece_sizes(e), strict=True)}
    missing = [k for k in sizes if not store.has(k)]
    total = sum(sizes[k] for k in missing)
    received = [0]

    def count(n: int) -> None:
        received[0] += n
        if progress is not None:
            progress("downloading", min(received[0], total), total)

    fetch_into(server, store, missing, count)
    return entries


def fetch_into(
    server: Client,
    store: BlobStore,
    keys: list[str],
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Put the blobs of ``keys`` that the store lacks into it, each verified against
    its name: directly from the server's object store when it presigns (a few at
    once), else streamed through the server a thousand to a request. Return how many."""
    missing = [k for k in dict.fromkeys(keys) if not store.has(k)]
    for start in range(0, len(missing), 1000):
        batch = missing[start : start + 1000]
        urls = server.download_urls(batch)
        if urls["missing"]:
            raise AssetError(
                f"can't download blobs from the server: {len(urls['missing'])} blob(s) aren't "
                f"on the server (first: {urls['missing'][0]})"
            )
        if urls["direct"]:
            _fetch_direct(server, store, urls["urls"], on_bytes)
        else:
            _fetch_proxied(server, store, batch, on_bytes)
    return len(missing)


def _fetch_direct(
    server: Client,
    store: BlobStore,
    urls: dict[str, str],
    on_bytes: Callable[[int], None] | None,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ..remote import transfers

    def one(item: tuple[str, str]) -> None:
        key, url = item
        try:
            transfers.get_blob(server.direct, url, key, store.writer)
        except BlobError:
            server.report_corrupt([key])
            raise
        if on_bytes is not None:
            on_bytes(store.size(key))

    try:
        with ThreadPoolExecutor(DIRECT_AT_ONCE) as pool:
            list(pool.map(one, urls.items()))
    except BlobError as e:
        raise AssetError(f"can't download blobs from the server's store: {e}") from None


def _fetch_proxied(
    server: Client,
    store: BlobStore,
    keys: list[str],
    on_bytes: Callable[[int], None] | None,
) -> None:
    into = IntoStore(store, 1 << 40)

    def feed(chunk: bytes) -> None:
        into.feed(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))

    try:
        server.fetch_blobs(keys, feed)
        into.close()
    except BlobError as e:
        raise AssetError(f"can't download blobs from the server: {e}") from None
    finally:
        into.abort()
