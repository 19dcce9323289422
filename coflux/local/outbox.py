"""The outbox: operations made while the server was unreachable, replayed exactly once.

An operation is written to ``.coflux/state.db`` (committed, with an
idempotency key) before the command reports it queued (invariant I5).
``replay`` (``coflux sync``, and agents when they connect) sends the entries
in order, each through its operation's own request (the operations of
:mod:`coflux.local.operations` queue the entries, and ``send_queued`` there
sends one); the server applies each key at most once, so a sync that dies
after the server applied an entry but before it was marked done, or a sync
run twice, never applies anything twice.

An entry leaves the queue only when the server has durably accepted it (a
2xx, sent after its commit) or refused it for a reason retrying can't change
(a 4xx: an unknown target, a malformed request). A full disk (507), a failing
or overloaded server (5xx), a dropped connection or a missing token keep it
queued, with the reason, for the next sync. A row that can't be read as an
entry is set aside (marked, never deleted) with a message naming it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    CofluxError,
    Forbidden,
    ServerError,
    ServerUnreachable,
    StorageFull,
    Unauthorized,
)
from ..remote.client import Client
from ..remote.server import failpoints
from .config import Config, Workspace
from .operations import REQUIRED, send_queued
from .state_connection import named_rows, reading

#: What ``coflux submit`` and friends print when they queue instead.
QUEUED = "queued: server unreachable; run `coflux sync`"

#: Refusals that a later attempt can turn into success: the entry stays queued.
TRANSIENT = (ServerUnreachable, StorageFull, ServerError, Unauthorized, Forbidden)


@dataclass(frozen=True)
class Entry:
    id: int
    operation: str
    payload: dict[str, Any]
    idempotency_key: str
    created_at: float
    #: Why the last attempt to send it was refused for now (it stays queued).
    last_error: str | None = None

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


@dataclass(frozen=True)
class Malformed:
    """A queue row that can't be read as an entry."""

    id: int
    reason: str

    def describe(self) -> str:
        return f"queue entry {self.id}"


def enqueue(
    config: Config, operation: str, payload: dict[str, Any], key: str | None = None
) -> Entry:
    """Write an operation ahead (with ``key`` when the operation may already have
    been sent with it); it is safe on disk when this returns. The operations of
    :mod:`coflux.local.operations` call it, and make its payload."""
    from . import state  # SQLAlchemy: write commands only (reads use ``state_connection``)

    assert config.server is not None, "the embedded server is always reachable"
    with state.writing(config.data_dir) as c:
        if (
            isinstance(config, Workspace)
            and config.sources.get("environment") == "git"
            and config.environment != config.production
        ):
            # The branch's environment is created on first use; offline, by the sync.
            _queue_environment(c, config)
        key = key or uuid.uuid4().hex
        created = state.now()
        # SQLAlchemy types inserted_primary_key as Optional (None for statements other
        # than an INSERT); a one-row INSERT always has it, hence the ignore.
        id = c.execute(
            state.T_OUTBOX.insert().values(
                server=config.server,
                project=config.project,
                operation=operation,
                payload=payload,
                idempotency_key=key,
                created_at=created,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    return Entry(id, operation, payload, key, created)


def _queue_environment(c: Any, config: Workspace) -> None:
    """Queue the creation of the branch's environment unless one for it is queued."""
    from sqlalchemy import select

    from . import state

    queued = c.execute(
        select(state.T_OUTBOX.c.payload)
        .where(state.T_OUTBOX.c.server == config.server)
        .where(state.T_OUTBOX.c.project == config.project)
        .where(state.T_OUTBOX.c.operation == "create_environment")
        .where(state.T_OUTBOX.c.done_at.is_(None))
    ).scalars()
    if any(isinstance(p, dict) and p.get("name") == config.environment for p in queued):
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


def read_queue(config: Config) -> tuple[list[Entry], list[Malformed]]:
    """Entries not yet applied for the workspace's server and project, oldest first,
    and the rows among them that can't be read as entries."""
    if config.server is None:
        return [], []
    with reading(config.data_dir) as c:
        if c is None:
            return [], []
        # Raw text, so one damaged payload can't make the whole read fail.
        rows = named_rows(
            c.execute(
                "SELECT id, operation, CAST(payload AS TEXT) AS payload, idempotency_key, "
                "created_at, error FROM outbox WHERE server = ? AND project = ? "
                "AND done_at IS NULL ORDER BY id",
                (config.server, config.project),
            )
        )
    entries, malformed = [], []
    for row in rows:
        reason = _malformed(row)
        if reason is None:
            entries.append(
                Entry(
                    row.id,
                    row.operation,
                    json.loads(row.payload),
                    row.idempotency_key,
                    float(row.created_at),
                    row.error,
                )
            )
        else:
            malformed.append(Malformed(row.id, reason))
    return entries, malformed


def _malformed(row: Any) -> str | None:
    """Why ``row`` isn't a queue entry, or None."""
    required = REQUIRED.get(row.operation)
    if required is None:
        return f"unknown operation {row.operation!r}"
    try:
        payload = json.loads(row.payload)
    except (TypeError, ValueError):
        return "its payload is not JSON"
    if not isinstance(payload, dict):
        return "its payload is not a JSON object"
    for name, kind in required.items():
        if not isinstance(payload.get(name), kind) or isinstance(payload.get(name), bool):
            return f"its payload lacks a valid {name!r}"
    if not isinstance(row.idempotency_key, str) or not row.idempotency_key:
        return "it has no idempotency key"
    if not isinstance(row.created_at, int | float):
        return "its creation time is not a number"
    return None


def pending(config: Config) -> list[Entry]:
    """The readable entries not yet applied, oldest first."""
    return read_queue(config)[0]


def refusals(config: Config) -> list[dict[str, Any]]:
    """Entries refused for good, or set aside, that no one has dismissed yet."""
    if config.server is None:
        return []
    with reading(config.data_dir) as c:
        if c is None:
            return []
        rows = named_rows(
            c.execute(
                "SELECT id, operation, CAST(payload AS TEXT) AS payload, idempotency_key, "
                "created_at, error, done_at FROM outbox WHERE server = ? AND "
                "project = ? AND done_at IS NOT NULL AND error IS NOT NULL "
                "AND dismissed_at IS NULL ORDER BY id",
                (config.server, config.project),
            )
        )
    out = []
    for row in rows:
        reason = _malformed(row)
        description = (
            Entry(row.id, row.operation, json.loads(row.payload), "", 0).describe()
            if reason is None
            else Malformed(row.id, reason).describe()
        )
        out.append(
            {
                "operation": row.id,
                "description": description,
                "error": row.error,
                "refused_at": row.done_at,
            }
        )
    return out


@dataclass
class Outcome:
    entry: Entry | Malformed
    result: dict[str, Any] | None = None
    error: str | None = None
    #: ``sent`` (applied), ``refused`` (for good), ``kept`` (refused for now:
    #: still queued) or ``set_aside`` (a malformed row).
    status: str = "sent"


def replay(
    client: Client, config: Config, on_outcome: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Send every pending entry in order; mark each done with the server's answer.

    A malformed row is set aside first. An entry the server refuses for good
    (say, an unknown target) is marked done with the error, so it never blocks
    the entries behind it. A transient refusal stops the replay there (later
    entries may depend on it), keeping it and the rest queued.
    """
    outcomes = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    entries, malformed = read_queue(config)
    for bad in malformed:
        error = f"set aside: {bad.describe()} is malformed ({bad.reason}); kept in state.db"
        _mark(config, bad.id, done=True, result={"set_aside": True}, error=error)
        report(Outcome(bad, error=error, status="set_aside"))
    for entry in entries:
        try:
            outcome = Outcome(entry, result=send_queued(client, config, entry))
        except TRANSIENT as e:
            _mark(config, entry.id, done=False, error=str(e))
            report(Outcome(entry, error=str(e), status="kept"))
            break
        except CofluxError as e:
            outcome = Outcome(entry, error=str(e), status="refused")
        failpoints.hit("sync.after_server_ack")
        _mark(config, entry.id, done=True, result=outcome.result, error=outcome.error)
        failpoints.hit("sync.after_mark")
        report(outcome)
    return outcomes


def _mark(
    config: Config,
    id: int,
    done: bool,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    from sqlalchemy import update

    from . import state

    values: dict[str, Any] = {"error": error}
    if done:
        values.update(done_at=state.now(), result=result)
    with state.writing(config.data_dir) as c:
        c.execute(update(state.T_OUTBOX).where(state.T_OUTBOX.c.id == id).values(**values))


def dismiss(config: Config) -> int:
    """Acknowledge every refusal and set-aside row; return how many."""
    from sqlalchemy import update

    from . import state

    with state.writing(config.data_dir) as c:
        return c.execute(
            update(state.T_OUTBOX)
            .where(state.T_OUTBOX.c.server == config.server)
            .where(state.T_OUTBOX.c.project == config.project)
            .where(state.T_OUTBOX.c.done_at.is_not(None))
            .where(state.T_OUTBOX.c.error.is_not(None))
            .where(state.T_OUTBOX.c.dismissed_at.is_(None))
            .values(dismissed_at=state.now())
        ).rowcount


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
                    if outcome.status == "kept":
                        log.warning("queued %s kept for the next sync: %s", what, outcome.error)
                    elif outcome.error:
                        log.warning("queued %s refused: %s", what, outcome.error)
                    else:
                        log.info("sent queued %s", what)
        except CofluxError as e:
            log.warning("sending queued operations failed: %s", e)

    def start() -> None:
        if config.server is not None and pending(config):
            threading.Thread(target=flush, name="coflux-outbox", daemon=True).start()

    return start
