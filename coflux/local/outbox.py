"""The outbox: operations made while the server was unreachable, replayed exactly once.

An operation is written to ``.coflux/state.db`` (committed, with an
idempotency key) before the command reports it queued (invariant I5).
``replay`` (``coflux sync``, and agents when they connect) sends the entries
in order; the server applies each key at most once, so a sync that dies
after the server applied an entry but before it was marked done, or a sync
run twice, never applies anything twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from .. import failpoints
from ..config import Config
from ..errors import CofluxError, Conflict, ServerUnreachable
from ..remote.client import Client
from . import state

#: What ``coflux submit`` and friends print when they queue instead.
QUEUED = "queued: server unreachable; run `coflux sync`"


@dataclass(frozen=True)
class Entry:
    id: int
    operation: str
    payload: dict[str, Any]
    idempotency_key: str
    created_at: float

    def describe(self) -> str:
        p = self.payload
        match self.operation:
            case "submit":
                return f"submit {p['repository']}:{p['target']} in {p['environment']}"
            case "rerun":
                return f"rerun {p['run']}:{p['step']} in {p['environment']}"
            case "cancel":
                step = f":{p['step']}" if p.get("step") else ""
                return f"cancel {p['run']}{step}"
            case "create_environment":
                return f"create environment {p['name']}"
            case "register":
                return f"register {p['repository']} in {p['environment']}"
        return self.operation


def enqueue(
    config: Config, operation: str, payload: dict[str, Any], key: str | None = None
) -> Entry:
    """Write an operation ahead (with ``key`` when the operation may already have
    been sent with it); it is safe on disk when this returns."""
    assert config.server is not None, "the embedded server is always reachable"
    with state.writing(config.data_dir) as c:
        if config.sources.get("environment") == "git" and config.environment not in (
            None,
            config.production,
        ):
            # The branch's environment is created on first use; offline, by the sync.
            _queue_environment(c, config)
        key = key or uuid.uuid4().hex
        created = state.now()
        id = c.execute(
            state.T_OUTBOX.insert().values(
                server=config.server,
                project=config.project,
                operation=operation,
                payload=payload,
                idempotency_key=key,
                created_at=created,
            )
        ).inserted_primary_key[0]
    return Entry(id, operation, payload, key, created)


def _queue_environment(c: Any, config: Config) -> None:
    pending = c.execute(
        select(state.T_OUTBOX.c.id)
        .where(state.T_OUTBOX.c.server == config.server)
        .where(state.T_OUTBOX.c.project == config.project)
        .where(state.T_OUTBOX.c.operation == "create_environment")
        .where(state.T_OUTBOX.c.done_at.is_(None))
    ).all()
    if pending:
        return
    c.execute(
        state.T_OUTBOX.insert().values(
            server=config.server,
            project=config.project,
            operation="create_environment",
            payload={"name": config.environment, "base": config.production},
            idempotency_key=uuid.uuid4().hex,
            created_at=state.now(),
        )
    )


def pending(config: Config) -> list[Entry]:
    """Entries not yet applied for the workspace's server and project, oldest first."""
    if config.server is None or not (config.data_dir / "state.db").exists():
        return []
    with state.engine(config.data_dir).connect() as c:
        rows = c.execute(
            select(state.T_OUTBOX)
            .where(state.T_OUTBOX.c.server == config.server)
            .where(state.T_OUTBOX.c.project == config.project)
            .where(state.T_OUTBOX.c.done_at.is_(None))
            .order_by(state.T_OUTBOX.c.id)
        ).all()
    return [Entry(r.id, r.operation, r.payload, r.idempotency_key, r.created_at) for r in rows]


@dataclass
class Outcome:
    entry: Entry
    result: dict[str, Any] | None = None
    error: str | None = None


def replay(
    client: Client, config: Config, on_outcome: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Send every pending entry in order; mark each done with the server's answer.

    An entry the server refuses (say, an unknown target) is marked done with
    the error, so it never blocks the entries behind it. An unreachable server
    stops the replay (``ServerUnreachable``), leaving the rest queued.
    """
    outcomes = []
    for entry in pending(config):
        try:
            outcome = Outcome(entry, result=_apply(client, config, entry))
        except ServerUnreachable:
            raise
        except CofluxError as e:
            outcome = Outcome(entry, error=str(e))
        failpoints.hit("sync.after_server_ack")
        with state.writing(config.data_dir) as c:
            c.execute(
                update(state.T_OUTBOX)
                .where(state.T_OUTBOX.c.id == entry.id)
                .values(done_at=state.now(), result=outcome.result, error=outcome.error)
            )
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def _apply(client: Client, config: Config, entry: Entry) -> dict[str, Any]:
    p, key = entry.payload, entry.idempotency_key
    match entry.operation:
        case "submit":
            _upload_blobs(client, config, p["arguments"])
            return client.submit(
                p["environment"], p["repository"], p["target"], p["arguments"], key
            )
        case "rerun":
            return client.rerun(p["run"], p["step"], p["environment"], p.get("force", False), key)
        case "cancel":
            return client.cancel(p["run"], p.get("step"))
        case "create_environment":
            try:
                return client.create_environment(p["name"], p.get("base"))
            except Conflict:
                return {"name": p["name"], "existed": True}  # made meanwhile, or by this entry
        case "register":
            client.register(p["environment"], p["repository"], p["targets"])
            return {"repository": p["repository"]}
    raise CofluxError(f"unknown queued operation {entry.operation!r}")


def _upload_blobs(client: Client, config: Config, arguments: list[dict[str, Any]]) -> None:
    """Arguments too big to travel inline were kept in the local store when queued."""
    keys = [a["blob"] for a in arguments if a.get("blob")]
    if not keys:
        return
    from ..cache import BlobStore

    store = BlobStore(config.data_dir / "cas")
    for key in client.missing_blobs(keys):
        client.put_blob(key, store.get_bytes(key))


def flush_in_background(config: Config) -> Callable[[], None]:
    """A callback for an agent's (re)connection: replay the outbox in a thread."""
    import logging
    import threading

    log = logging.getLogger("coflux.agent")

    def flush() -> None:
        try:
            with Client(config.server or "", config.project, token=config.token) as client:
                for outcome in replay(client, config):
                    what = outcome.entry.describe()
                    if outcome.error:
                        log.warning("queued %s refused: %s", what, outcome.error)
                    else:
                        log.info("sent queued %s", what)
        except CofluxError as e:
            log.warning("sending queued operations failed: %s", e)

    def start() -> None:
        if config.server is not None and pending(config):
            threading.Thread(target=flush, name="coflux-outbox", daemon=True).start()

    return start
