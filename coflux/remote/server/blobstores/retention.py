"""Which blobs a project still needs, and removing the rest (``coflux server gc``).

A blob is referenced when a stored value names it (a step's or an
execution's arguments, a checkpoint, a result, an error, a log message's
values: any ``"blob"`` field of their JSON) or when it is an asset's manifest
or one of the blobs that manifest lists (assets are found both from their
records and from ``a:`` references inside values). Everything else older
than the grace period goes; the grace period covers uploads whose record
is still on its way (an agent uploads an asset's blobs before recording it).
If a manifest can't be read, nothing of that project is removed: what it
references can't be known. In object storage, multipart uploads begun before
the grace period and never completed (their client died) are aborted too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from ....assets import blob_keys, decode
from ....errors import BlobError
from . import ProjectBlobs

_ASSET_REF = re.compile(r"^a:([0-9a-f]{32})$")
_COLUMNS = (
    ("steps", "arguments"),
    ("executions", "arguments"),
    ("executions", "checkpoint"),
    ("results", "value"),
    ("results", "error"),
    ("log_messages", "values"),
)


def _walk(value: Any, blobs: set[str], assets: set[str]) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "blob" and isinstance(item, str):
                blobs.add(item)
            else:
                _walk(item, blobs, assets)
    elif isinstance(value, list):
        for item in value:
            _walk(item, blobs, assets)
    elif isinstance(value, str):
        match = _ASSET_REF.match(value)
        if match:
            assets.add(match.group(1))


def _rows(engine: Engine) -> Iterable[Any]:
    import json

    with engine.connect() as c:
        for table, column in _COLUMNS:
            for (value,) in c.execute(text(f'SELECT "{column}" FROM {table}')):  # noqa: S608 - fixed names
                yield json.loads(value) if isinstance(value, str) else value
        for (ref,) in c.execute(text("SELECT ref FROM assets")):
            yield ref


def referenced(engine: Engine, store: ProjectBlobs) -> set[str]:
    """Every blob the project's database refers to, directly or through an asset."""
    blobs: set[str] = set()
    assets: set[str] = set()
    for value in _rows(engine):
        _walk(value, blobs, assets)
    for key in assets:
        try:
            entries = decode(store.get_bytes(key))
        except BlobError as e:
            raise ManifestUnreadable(f"asset a:{key}'s manifest can't be read: {e}") from None
        blobs.add(key)
        blobs.update(blob_keys(entries))
    return blobs


class ManifestUnreadable(Exception):
    pass


def collect(engine: Engine, store: ProjectBlobs, grace: float, dry_run: bool) -> dict[str, Any]:
    """Remove (or with ``dry_run`` only list) the project's unreferenced blobs older
    than ``grace`` seconds; return what was (or would be) removed."""
    # Listed before the references are read: a blob uploaded and referenced
    # meanwhile is either not listed or within the grace period.
    listed = list(store.entries())
    try:
        keep = referenced(engine, store)
    except ManifestUnreadable as e:
        return {
            "removed": [],
            "bytes": 0,
            "kept": len(listed),
            "skipped": str(e),
            "aborted_uploads": 0,
        }
    cutoff = time.time() - grace
    doomed = [(k, n) for k, n, modified in listed if k not in keep and modified < cutoff]
    aborted = 0
    if not dry_run:
        for key, _ in doomed:
            store.delete(key)
        abort = getattr(store, "abort_stale_uploads", None)
        if abort is not None:
            aborted = abort(cutoff)
    return {
        "removed": [k for k, _ in doomed],
        "bytes": sum(n for _, n in doomed),
        "kept": len(listed) - len(doomed),
        "skipped": None,
        "aborted_uploads": aborted,
    }
