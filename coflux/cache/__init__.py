"""The content-addressed store and cache keys: xxh3-128 names, atomic writes, verified reads."""

from __future__ import annotations

from .keys import hash_bytes, validate_key
from .store import BlobStore

__all__ = ["BlobStore", "hash_bytes", "validate_key"]
