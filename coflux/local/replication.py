"""Copying runs between the shared server and the workspace's embedded one.

- ``pull``: an environment's recent runs (with their cache entries) and the
  environment tree, from the shared server into ``.coflux/state.db``, and with
  ``blobs`` the blobs behind their values into ``.coflux/cas``;
- ``seed``: what was pulled, into the embedded server, so offline work there
  inherits production's cached results;
- pushing what was made offline back is ``coflux.local.push``.

Runs travel as immutable facts (``GET .../export``, ``POST .../import``); an
import adds what is missing, so pushing or seeding twice changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert

from ..assets import blob_keys, decode, parse
from ..cache import BlobStore
from ..errors import BlobError, Conflict
from ..records.values import blob_keys_in
from ..remote.client import Client
from . import state
from .assets import fetch_into
from .config import Config


def pull(client: Client, config: Config, environment: str, blobs: bool, limit: int = 200) -> dict:
    """Keep the environment tree and ``environment``'s newest runs for offline work."""
    environments = client.list_environments()
    runs = client.list_runs(environment, limit)
    store = BlobStore(config.data_dir / "cas")
    downloaded = 0
    with state.writing(config.data_dir) as c:
        c.execute(
            insert(state.T_SNAPSHOTS)
            .values(
                server=config.server,
                project=config.project,
                name="environments",
                data=environments,
                taken_at=state.now(),
            )
            .on_conflict_do_update(
                index_elements=["server", "project", "name"],
                set_={"data": environments, "taken_at": state.now()},
            )
        )
    kept = skipped = 0
    for run in runs:
        if run["state"] == "running":
            skipped += 1  # its facts aren't final; a later pull takes it
            continue
        kept += 1
        facts = client.export_run(run["id"])
        if blobs:
            keys = sorted(blob_keys_in(facts) | _asset_blobs(facts, store, client))
            downloaded += fetch_into(client, store, keys)
        row = {"server": config.server, "project": config.project, "id": run["id"]}
        values = {"environment": environment, "facts": facts, "pulled_at": state.now()}
        with state.writing(config.data_dir) as c:
            c.execute(
                insert(state.T_PULLED)
                .values(**row, **values)
                .on_conflict_do_update(index_elements=list(row), set_=values)
            )
    return {
        "environment": environment,
        "runs": kept,
        "skipped_running": skipped,
        "blobs": downloaded,
    }


def _pulled(config: Config) -> Iterator[Any]:
    if not (config.data_dir / "state.db").exists():
        return
    with state.engine(config.data_dir).connect() as c:
        yield from c.execute(
            select(state.T_PULLED)
            .where(state.T_PULLED.c.server == config.server)
            .where(state.T_PULLED.c.project == config.project)
            .order_by(state.T_PULLED.c.pulled_at)
        )


def seed(embedded: Client, config: Config) -> int:
    """Give the embedded server the pulled environments and runs; return how many runs."""
    if not (config.data_dir / "state.db").exists():
        return 0
    with state.engine(config.data_dir).connect() as c:
        snapshot = c.execute(
            select(state.T_SNAPSHOTS.c.data)
            .where(state.T_SNAPSHOTS.c.server == config.server)
            .where(state.T_SNAPSHOTS.c.project == config.project)
            .where(state.T_SNAPSHOTS.c.name == "environments")
        ).scalar()
    copy_environments(embedded, snapshot or [])
    seeded = 0
    for row in _pulled(config):
        _upload_blobs(embedded, config, row.facts)
        embedded.import_run(row.facts)
        seeded += 1
    return seeded


def pulled_facts(config: Config) -> dict[str, dict[str, Any]]:
    """The facts of every run pulled for offline work, by run ID."""
    return {row.id: row.facts for row in _pulled(config)}


def copy_environments(client: Client, environments: list[dict[str, Any]]) -> None:
    """Create the environments ``client``'s server lacks, bases first."""
    present = {e["name"] for e in client.list_environments()}
    pending = [e for e in environments if e["name"] not in present]
    while pending:
        ready = [e for e in pending if e["base"] is None or e["base"] in present]
        if not ready:
            break  # a base that doesn't exist anywhere: leave those out
        for environment in ready:
            with contextlib.suppress(Conflict):
                client.create_environment(environment["name"], environment["base"])
            present.add(environment["name"])
            pending.remove(environment)


def _upload_blobs(
    client: Client, config: Config, facts: dict[str, Any], source: Client | None = None
) -> None:
    """Give ``client``'s server the blobs of a run's values and assets that it lacks,
    from the local store (or, failing that, from ``source``)."""
    store = BlobStore(config.data_dir / "cas")
    keys = sorted(blob_keys_in(facts) | _asset_blobs(facts, store, source))
    if not keys:
        return
    for key in client.missing_blobs(keys):
        if store.has(key):
            client.upload_blob(key, store.open_chunks(key))
        elif source is not None:
            with contextlib.suppress(BlobError):
                client.put_blob(key, source.get_blob(key))


def _asset_blobs(facts: dict[str, Any], store: BlobStore, source: Client | None) -> set[str]:
    """The manifests of the run's assets and every blob they name."""
    keys: set[str] = set()
    for asset in facts.get("assets", []):
        keys.add(asset["ref"])
        try:
            entries = decode(store.get_bytes(asset["ref"]))
        except BlobError:
            if source is None:
                continue
            entries = parse(source.get_asset(asset["ref"])["entries"])
        keys.update(blob_keys(entries))
    return keys
