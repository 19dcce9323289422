"""Assets of a running execution: persisted into the machine's store and handed
to the agent for upload as they are stored; restored from the store, which the
agent fills from the server with what it lacks."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import context
from ..assets import Entry, decode, persist, restore, restored_path
from . import framing

if TYPE_CHECKING:
    from .channel import Channel

#: Bytes of stored blobs handed to the agent for upload at once, while persisting.
UPLOAD_GROUP = 16 * 1024 * 1024


class Uploads:
    """Blobs of an asset being persisted, sent to the agent in groups of about
    ``UPLOAD_GROUP`` bytes as they are stored, so the upload overlaps storing.
    ``persist_asset`` then waits for those uploads and sends what is left."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._keys: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def add(self, entry: Entry) -> None:  # called from the storing threads
        with self._lock:
            self._keys.extend(entry.blobs)
            self._size += entry.size
            if self._size >= UPLOAD_GROUP:
                self._send()

    def flush(self) -> None:
        with self._lock:
            self._send()

    def _send(self) -> None:
        if self._keys:
            upload = framing.Upload(execution_id=self._channel.execution_id, keys=self._keys)
            self._channel.connection.send(upload)
        self._keys, self._size = [], 0


class AgentAssets:
    """Assets of an execution: persisted into the machine's store, then shared
    through the server by the agent; restored from the store, which the agent
    fills from the server with what it lacks."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._store = channel.store

    def persist(self, path: str | os.PathLike[str] | None, match: str | None) -> context.Asset:
        # Blobs are handed to the agent for upload while the rest are stored.
        uploads = Uploads(self._channel)
        key, entries, name = persist(self._store, Path.cwd(), path, match, uploads.add)
        uploads.flush()
        self._channel.connection.request(
            "persist_asset", execution_id=self._channel.execution_id, key=key, path=name
        )
        return context.Asset(key, entries)

    def entries(self, key: str) -> list[Entry]:
        if not self._store.has(key):
            self._channel.connection.request("fetch_asset", key=key)
        return decode(self._store.get_bytes(key))

    def restore(self, key: str, to: Path, force: bool) -> Path:
        # The agent fetches the manifest and whatever blobs the store lacks.
        self._channel.connection.request("fetch_asset", key=key)
        data = self._store.get_bytes(key)
        entries = decode(data)
        return restored_path(data, entries, restore(self._store, entries, to, force))
