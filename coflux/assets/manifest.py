"""An asset's manifest: its files as entries, checked so that none can point outside.

A manifest lists files by relative path, permission bits, size and the blobs
holding their content (files over ``PIECE_SIZE`` are split into several). Its
canonical encoding (sorted entries, sorted keys, no spaces) is stored as a
blob, and that blob's key is the asset's reference: identical content, wherever
it came from, has the same reference.

Every manifest is validated where it enters (the server's API, the blob store
on read, a restore) by :func:`parse`, which names the first offending entry.
Paths are data, never trusted: no ``..`` or ``.`` parts, no empty parts, no
absolute paths, no backslashes or control characters, at most 4,096 bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..cache.keys import hash_bytes, validate_key
from ..errors import InvalidInput
from ..records.values import ASSET_PREFIX

#: The largest blob a file's content is split into (the server accepts blobs up to 64 MiB).
PIECE_SIZE = 32 * 1024 * 1024
#: The longest entry path, in UTF-8 bytes (Linux's PATH_MAX).
MAX_PATH_BYTES = 4096
MAX_PART_BYTES = 255
#: How assets are written in references: ``a:<hash>`` (``coflux.records.values``).
PREFIX = ASSET_PREFIX


@dataclass(frozen=True)
class Entry:
    path: str
    mode: int
    size: int
    blobs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "mode": self.mode, "size": self.size, "blobs": list(self.blobs)}


class InvalidManifest(InvalidInput):
    status_code = 400
    code = "invalid_manifest"


def check_path(path: Any) -> str:
    """``path`` if it is a safe relative path, else ``InvalidManifest`` saying why."""
    if not isinstance(path, str) or not path:
        raise InvalidManifest(f"entry path {path!r} is empty or not text")
    shown = repr(path[:100] + ("…" if len(path) > 100 else ""))
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidManifest(f"entry path {shown} is over {MAX_PATH_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise InvalidManifest(f"entry path {shown} contains a control character")
    if "\\" in path:
        raise InvalidManifest(f"entry path {shown} contains a backslash")
    if path.startswith("/"):
        raise InvalidManifest(f"entry path {shown} is absolute")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidManifest(f"entry path {shown} has an empty, '.' or '..' part")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES:
            raise InvalidManifest(f"entry path {shown} has a part over {MAX_PART_BYTES} bytes")
    return path


def _entry(raw: Any) -> Entry:
    if not isinstance(raw, dict) or set(raw) != {"path", "mode", "size", "blobs"}:
        raise InvalidManifest(f"entry {str(raw)[:100]!r} must have path, mode, size and blobs")
    path = check_path(raw["path"])
    mode, size, blobs = raw["mode"], raw["size"], raw["blobs"]
    if type(mode) is not int or not 0 <= mode <= 0o777:
        raise InvalidManifest(f"entry {path!r}: mode must be permission bits (0 to 0o777)")
    if type(size) is not int or size < 0:
        raise InvalidManifest(f"entry {path!r}: size must be a whole number of bytes")
    if not isinstance(blobs, list) or len(blobs) != -(-size // PIECE_SIZE):
        raise InvalidManifest(f"entry {path!r}: expected one blob per {PIECE_SIZE} bytes")
    try:
        keys = tuple(validate_key(k) for k in blobs)
    except InvalidInput as e:
        raise InvalidManifest(f"entry {path!r}: {e}") from None
    return Entry(path, mode, size, keys)


def parse(raw_entries: Any) -> list[Entry]:
    """Validated entries, sorted by path; ``InvalidManifest`` naming the first bad one."""
    if not isinstance(raw_entries, list):
        raise InvalidManifest("an asset's entries must be a list")
    entries = sorted((_entry(raw) for raw in raw_entries), key=lambda e: e.path)
    paths = {e.path for e in entries}
    for entry in entries:
        parent = entry.path.rpartition("/")[0]
        while parent:
            if parent in paths:
                raise InvalidManifest(f"entry {entry.path!r} is inside the file {parent!r}")
            parent = parent.rpartition("/")[0]
    for before, after in zip(entries, entries[1:], strict=False):
        if before.path == after.path:
            raise InvalidManifest(f"entry {after.path!r} appears twice")
    return entries


def encode(entries: list[Entry], file: bool = False) -> bytes:
    """The canonical bytes of a manifest; their hash is the asset's reference.

    ``file``: the asset is one file persisted as itself (not a directory), so a
    restore returns the file's path; its manifest says ``"kind": "file"``.
    """
    document: dict[str, Any] = {
        "format": 1,
        "entries": [e.to_dict() for e in sorted(entries, key=_path)],
    }
    if file and len(entries) == 1:
        document["kind"] = "file"
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def is_file(data: bytes) -> bool:
    """Whether a stored manifest is of one file persisted as itself."""
    try:
        document = json.loads(data)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("kind") == "file"


def restored_path(data: bytes, entries: list[Entry], folder: Any) -> Any:
    """What a restore into ``folder`` returns: the file's path for a file, else ``folder``."""
    return folder / entries[0].path if is_file(data) and len(entries) == 1 else folder


def decode(data: bytes) -> list[Entry]:
    """A stored manifest's entries, validated."""
    try:
        document = json.loads(data)
    except ValueError:
        raise InvalidManifest("an asset manifest that isn't JSON") from None
    if not isinstance(document, dict) or document.get("format") != 1:
        raise InvalidManifest("an asset manifest of an unknown format")
    return parse(document.get("entries"))


def reference_of(entries: list[Entry]) -> str:
    """The hash (blob key) of the manifest of ``entries``."""
    return hash_bytes(encode(entries))


def parse_reference(ref: str) -> str:
    """The manifest's blob key from ``a:<hash>`` (or a bare hash)."""
    key = ref[len(PREFIX) :] if isinstance(ref, str) and ref.startswith(PREFIX) else ref
    try:
        return validate_key(key)
    except InvalidInput:
        shown = ref[:80] if isinstance(ref, str) else ref
        raise InvalidInput(
            f"invalid asset reference {shown!r}: expected a:<32 hex characters>; "
            "list a run's assets with `coflux assets list RUN`"
        ) from None


def blob_keys(entries: list[Entry]) -> list[str]:
    """Every blob the entries name, once each, in order."""
    return list(dict.fromkeys(k for e in entries for k in e.blobs))


def piece_sizes(entry: Entry) -> list[int]:
    """The size of each of an entry's blobs: full pieces, then the rest."""
    return [min(PIECE_SIZE, entry.size - i * PIECE_SIZE) for i in range(len(entry.blobs))]


def _path(entry: Entry) -> str:
    return entry.path
