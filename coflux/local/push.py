"""Pushing the runs made or extended offline on the embedded server to the shared one.

Every run of the embedded server whose facts differ from what was last pushed
of it goes: a run made offline, a re-run of a run pulled with ``sync --pull``,
a re-run of a run pushed before. The shared server keeps steps and executions
it already has and renumbers those it gave the same number to meanwhile
(another workspace's re-run), so nothing is merged into anything else.

What was pushed is remembered as a digest of the run's facts (``state.db``,
``pushed_digests``), written only after the shared server answered 2xx for the
import, which it sends after its commit. A run still running on the embedded
server waits (its unfinished executions belong there). A run whose blobs are
gone from this machine is pushed without them, marked with their keys, and one
warning names it; a run the shared server refuses is reported and the others go
on; a transient refusal (full disk, failing server, dropped connection) stops
the push with everything not yet pushed still pending.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import xxhash
from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert

from ..cache import BlobStore
from ..errors import BlobError, CofluxError, NotFound
from ..records.values import blob_keys_in
from ..remote.client import Client
from ..remote.server import failpoints
from . import state
from .config import Config
from .outbox import TRANSIENT
from .replication import copy_environments, pulled_facts


@dataclass
class Candidate:
    """A run of the embedded server and whether (and why not) it goes to the shared one."""

    id: str
    environment: str
    state: str
    facts: dict[str, Any] | None = None
    digest: str | None = None
    #: ``push`` (changed since last pushed), ``unfinished`` (still running here).
    reason: str = "push"


@dataclass
class Pushed:
    id: str
    environment: str
    #: "pushed", "refused", "kept" (a transient refusal) or "waiting" (still running).
    status: str
    steps: int = 0
    executions: int = 0
    renumbered: dict[str, str] = field(default_factory=dict)
    missing_blobs: list[str] = field(default_factory=list)
    error: str | None = None


def digest(facts: dict[str, Any]) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps(facts, sort_keys=True).encode())


def _digests(config: Config) -> dict[str, str]:
    if not (config.data_dir / "state.db").exists():
        return {}
    with state.engine(config.data_dir).connect() as c:
        return {
            row.id: row.digest
            for row in c.execute(
                select(state.T_DIGESTS.c.id, state.T_DIGESTS.c.digest)
                .where(state.T_DIGESTS.c.server == config.server)
                .where(state.T_DIGESTS.c.project == config.project)
            )
        }


def _offline_part(facts: dict[str, Any], pulled: dict[str, Any]) -> bool:
    """Whether the embedded server's facts of a pulled run hold anything made offline."""
    had = {(e["step"], e["attempt"]) for e in pulled["executions"] if e.get("result")}
    now = {(e["step"], e["attempt"]) for e in facts["executions"] if e.get("result")}
    steps = {s["number"] for s in pulled["steps"]}
    return bool(now - had) or bool({s["number"] for s in facts["steps"]} - steps)


def plan(embedded: Client, config: Config) -> list[Candidate]:
    """The embedded server's runs not pushed as they stand, oldest first."""
    pulled = pulled_facts(config)
    pushed = _digests(config)
    runs = [
        (run, environment["name"])
        for environment in embedded.list_environments()
        for run in embedded.list_runs(environment["name"], 10000)
    ]
    out = []
    for run, environment in sorted(runs, key=lambda r: r[0]["created_at"]):
        if run["state"] == "running":
            out.append(Candidate(run["id"], environment, run["state"], reason="unfinished"))
            continue
        facts = embedded.export_run(run["id"])
        fingerprint = digest(facts)
        if pushed.get(run["id"]) == fingerprint:
            continue
        if run["id"] in pulled and not _offline_part(facts, pulled[run["id"]]):
            continue
        out.append(Candidate(run["id"], environment, run["state"], facts, fingerprint))
    return out


def push(
    shared: Client,
    embedded: Client,
    config: Config,
    on_result: Callable[[Pushed], None] | None = None,
) -> list[Pushed]:
    """Push what ``plan`` finds; stop at a transient refusal (the rest stays pending).
    Runs still running come last, as ``waiting``, not pushed."""
    planned = plan(embedded, config)
    candidates = [c for c in planned if c.reason == "push"]
    waiting = [Pushed(c.id, c.environment, "waiting") for c in planned if c.reason != "push"]
    if candidates:
        copy_environments(shared, embedded.list_environments())
    out = []
    for candidate in candidates:
        assert candidate.facts is not None and candidate.digest is not None
        result = Pushed(candidate.id, candidate.environment, "pushed")
        try:
            result.missing_blobs = _upload_blobs(shared, embedded, config, candidate.facts)
            answer = shared.import_run(candidate.facts)
            failpoints.hit("push.after_import")
        except TRANSIENT as e:
            result.status, result.error = "kept", str(e)
        except CofluxError as e:
            result.status, result.error = "refused", str(e)
        else:
            result.steps, result.executions = answer["steps"], answer["executions"]
            result.renumbered = answer.get("renumbered") or {}
            _remember(config, candidate, result.missing_blobs)
        out.append(result)
        if on_result is not None:
            on_result(result)
        if result.status == "kept":
            break
    return out + waiting


def _remember(config: Config, candidate: Candidate, missing: list[str]) -> None:
    row = {"server": config.server, "project": config.project, "id": candidate.id}
    values = {"digest": candidate.digest, "missing_blobs": missing, "pushed_at": state.now()}
    with state.writing(config.data_dir) as c:
        c.execute(
            insert(state.T_DIGESTS)
            .values(**row, **values)
            .on_conflict_do_update(index_elements=list(row), set_=values)
        )


def _upload_blobs(
    shared: Client, embedded: Client, config: Config, facts: dict[str, Any]
) -> list[str]:
    """Give the shared server the blobs of a run's values and assets it lacks, from
    the local store or the embedded server; return those found in neither."""
    store = BlobStore(config.data_dir / "cas")
    keys, missing = set(blob_keys_in(facts)), set()
    for asset in facts.get("assets", []):
        keys.add(asset["ref"])
        try:
            from ..assets import blob_keys, decode, parse

            try:
                entries = decode(store.get_bytes(asset["ref"]))
            except BlobError:
                entries = parse(embedded.get_asset(asset["ref"])["entries"])
            keys.update(blob_keys(entries))
        except (BlobError, NotFound):
            missing.add(asset["ref"])
    lacking = shared.missing_blobs(sorted(keys))
    # Directly to the shared server's object store when it presigns, as agents do.
    shared.upload_from_store(store, [k for k in lacking if store.has(k)])
    for key in lacking:
        if store.has(key):
            continue
        try:
            shared.put_blob(key, embedded.get_blob(key))
        except BlobError:
            missing.add(key)
    return sorted(missing)
