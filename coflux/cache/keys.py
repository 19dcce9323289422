"""Blob keys: xxh3-128 hex digests of content, and the check every key passes before use.

A key names a blob and, once validated, a path in a store. Nothing outside this
module decides what a well-formed key looks like.
"""

from __future__ import annotations

import json
import re
from typing import Any

import xxhash

from ..errors import InvalidInput

#: The length of a key: a 128-bit digest written as lowercase hex.
HASH_HEX_LENGTH = 32

_KEY = re.compile(rf"[0-9a-f]{{{HASH_HEX_LENGTH}}}")

# Keys in error messages come from users and clients; a bound keeps a hostile one readable.
_SHOWN_KEY_LENGTH = 80

#: ``json.dumps(..., sort_keys=True)``, without making an encoder per call (a
#: third of a key's cost, and every new step computes up to four keys).
_encode_sorted = json.JSONEncoder(sort_keys=True).encode


def hash_bytes(data: bytes) -> str:
    """The key of ``data``: its xxh3-128 digest as 32 lowercase hex characters."""
    return xxhash.xxh3_128_hexdigest(data)


class Hasher:
    """An incremental ``hash_bytes``: feed chunks to ``update``, then read ``hexdigest``."""

    def __init__(self) -> None:
        self._hash = xxhash.xxh3_128()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def validate_key(key: str) -> str:
    """Return ``key`` if it is exactly 32 lowercase hex characters, else raise ``InvalidInput``."""
    # fullmatch, not match with "$": "$" also accepts a trailing newline.
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        shown = key[:_SHOWN_KEY_LENGTH] if isinstance(key, str) else key
        raise InvalidInput(
            f"invalid blob key {shown!r}: expected {HASH_HEX_LENGTH} lowercase hex characters"
        )
    return key


def _canonical(argument: dict[str, Any]) -> list[Any]:
    """What identifies a serialised argument: its format, content (or blob hash) and
    references, and a typed value's metadata (a pydantic model's class)."""
    canonical = [
        argument.get("format"),
        argument.get("blob") or argument.get("data"),
        list(argument.get("references") or ()),
    ]
    if argument.get("meta"):  # only typed values: the keys of others stay as they were
        canonical.append(argument["meta"])
    return canonical


def arguments_key(prefix: list[str | None], arguments: list[dict[str, Any]]) -> str:
    """xxh3-128 over ``prefix`` (namespace, version...) and serialised arguments, by position.

    Names of parameters don't enter the key, so renaming a parameter keeps it.
    """
    payload = _encode_sorted([prefix, [_canonical(a) for a in arguments]])
    return hash_bytes(payload.encode())
