"""The machine's index of what its store holds: results and assets, per environment.

Agents record each result value and asset they make or fetch; ``coflux assets
restore`` records what it restores. A value whose blobs are in ``.coflux/cas``
is read from there, never downloaded again; ``coflux cache gc`` keeps the
blobs that an index entry (or a queued operation) still names.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert

from ..cache import BlobStore
from ..records.values import blob_keys_in
from . import state

#: Blobs written this recently may belong to an execution still running; gc keeps them.
IN_USE_SECONDS = 3600.0


def record(data_dir: Path, entries: list[dict[str, Any]]) -> None:
    """Add (or refresh) index entries: dicts of environment, kind, key, blobs (+ asset facts)."""
    if not entries:
        return
    now = state.now()
    with state.writing(data_dir) as c:
        for entry in entries:
            row = {"path": None, "files": None, "size": None, **entry, "created_at": now}
            c.execute(
                insert(state.T_INDEX)
                .values(**row)
                .on_conflict_do_update(
                    index_elements=["environment", "kind", "key"],
                    set_={"blobs": row["blobs"], "created_at": now},
                )
            )


def referenced(data_dir: Path) -> set[str]:
    """Every blob an index entry, a queued operation or a pulled run names."""
    if not (data_dir / "state.db").exists():
        return set()
    keys: set[str] = set()
    with state.engine(data_dir).connect() as c:
        for (blobs,) in c.execute(select(state.T_INDEX.c.blobs)):
            keys.update(blobs)
        pending = select(state.T_OUTBOX.c.payload).where(state.T_OUTBOX.c.done_at.is_(None))
        for (payload,) in c.execute(pending):
            keys |= blob_keys_in(payload)
        for (facts,) in c.execute(select(state.T_PULLED.c.facts)):
            keys |= blob_keys_in(facts)
    return keys


def stats(data_dir: Path) -> dict[str, Any]:
    store = BlobStore(data_dir / "cas")
    keys = list(store.keys())
    size = sum(_size(store, k) for k in keys)
    kept = referenced(data_dir)
    entries: dict[str, set[str]] = {"result": set(), "asset": set()}
    if (data_dir / "state.db").exists():
        with state.engine(data_dir).connect() as c:
            for row in c.execute(select(state.T_INDEX.c.kind, state.T_INDEX.c.key)):
                entries.setdefault(row.kind, set()).add(row.key)
    return {
        "path": str(store.root),
        "blobs": len(keys),
        "bytes": size,
        "indexed": {"results": len(entries["result"]), "assets": len(entries["asset"])},
        "unreferenced_blobs": sum(1 for k in keys if k not in kept),
    }


def collect_garbage(data_dir: Path, dry_run: bool = False) -> dict[str, Any]:
    """Remove blobs nothing in the index names and no running execution may be using."""
    store = BlobStore(data_dir / "cas")
    kept = referenced(data_dir)
    cutoff = time.time() - IN_USE_SECONDS
    removed = freed = 0
    for key in list(store.keys()):
        if key in kept:
            continue
        try:
            info = store.path(key).stat()
        except FileNotFoundError:
            continue
        if info.st_mtime > cutoff:
            continue
        if not dry_run:
            store.delete(key)
        removed += 1
        freed += info.st_size
    temporary = 0 if dry_run else store.clean_temp()
    return {"removed": removed, "bytes": freed, "temporary_files": temporary, "dry_run": dry_run}


def _size(store: BlobStore, key: str) -> int:
    try:
        return store.path(key).stat().st_size
    except FileNotFoundError:
        return 0
