"""Assets: files and directories persisted by executions, addressed by their content.

``manifest`` (entries, validation, the reference), ``persist`` (files into the
store) and ``restore`` (out of it, never outside the target), all on top of
``coflux.cache``. The SDK's ``cf.persist_asset``/``cf.Asset`` and the CLI's
``coflux assets`` use these.
"""

from __future__ import annotations

from .manifest import (
    PREFIX,
    Entry,
    blob_keys,
    decode,
    encode,
    parse,
    parse_reference,
    restored_path,
)
from .persist import persist
from .restore import restore

__all__ = [
    "PREFIX",
    "Entry",
    "blob_keys",
    "decode",
    "encode",
    "parse",
    "parse_reference",
    "persist",
    "restore",
    "restored_path",
]
