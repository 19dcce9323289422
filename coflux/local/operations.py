"""Workspace operations: the five changes a workspace can make offline, each in one place.

A submission, a re-run, a cancel, a registration and an environment's
creation are each one function here, which tries the workspace's server and,
when the server is unreachable and queuing is allowed, writes the operation
ahead in the outbox (:mod:`coflux.local.outbox`) instead. Each returns what
happened: :class:`Done`, with the server's answer, or :class:`Queued`, with
the outbox entries ``coflux sync`` will send.

Each operation's request to the server is one ``_send_*`` function, called by
the attempt online and by :func:`send_queued`, which is how the outbox's
replay sends an entry; so an operation reaches the server the same way
whether it was made online or queued, with the same payload and the same
idempotency key.

The queuing rule, in one place (:func:`_queueable`): only with a shared
server (the embedded one is always there); only when the caller allows it
(not ``--no-queue``); never when the caller goes on to use the answer with
the server (``then``: following a run can't be queued); never once the server
has answered (a follow-up that loses the connection is an error, not a second
submission); and a registration never in CI, so the build notices.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import BlobError, CofluxError, Conflict, InvalidInput, ServerUnreachable
from ..records.references import StepRef
from ..remote.client import Client
from .config import Config, Workspace
from .connection import open_client

if TYPE_CHECKING:
    from .outbox import Entry

A = TypeVar("A")

#: What each queued operation's payload must hold (name: type); the outbox sets
#: aside a row whose payload doesn't.
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "submit": {"environment": str, "repository": str, "target": str, "arguments": list},
    "rerun": {"run": str, "step": int, "environment": str},
    "cancel": {"run": str},
    "create_environment": {"name": str},
    "register": {"environment": str, "repository": str, "targets": list},
}


@dataclass(frozen=True)
class Done(Generic[A]):
    """The server applied the operation; ``answer`` is what it said."""

    answer: A


@dataclass(frozen=True)
class Queued:
    """The server was unreachable: the operation waits in the outbox (one entry
    each; a registration has one per repository)."""

    entries: tuple[Entry, ...]


def submit(
    workspace: Workspace,
    repository: str,
    target: str,
    arguments: list[str],
    *,
    queue: bool,
    then: Callable[[Client, dict[str, str]], None] | None = None,
) -> Done[dict[str, str]] | Queued:
    """Start a run of ``repository:target`` with command-line ``arguments``; ``then``
    runs with the client still open once the server has answered (to follow it)."""
    from .runs import encode_arguments

    values, blobs = encode_arguments(arguments)
    payload = {
        "environment": workspace.environment,
        "repository": repository,
        "target": target,
        "arguments": values,
    }
    # One key for the submission, online or queued: if the server applied it but
    # the answer was lost, the queued copy finds the same run.
    key = uuid.uuid4().hex

    def send(client: Client) -> dict[str, str]:
        check_target(client, workspace.environment, repository, target, len(arguments))
        return _send_submit(client, payload, key, blobs.__getitem__)

    def write_ahead() -> tuple[Entry, ...]:
        from ..cache import BlobStore

        store = BlobStore(workspace.data_dir / "cas")
        for data in blobs.values():
            store.put_bytes(data)  # uploaded by the sync
        return _enqueue(workspace, "submit", payload, key)

    return _attempt(workspace, send, write_ahead, queue and then is None, then)


def rerun(
    workspace: Workspace,
    run: str,
    step: int,
    force: bool,
    *,
    queue: bool,
    then: Callable[[Client, dict[str, str]], None] | None = None,
) -> Done[dict[str, str]] | Queued:
    """Re-run step ``run:step`` in the workspace's environment (``force``: execute every
    call again); ``then`` as for :func:`submit`."""
    payload = {"run": run, "step": step, "environment": workspace.environment, "force": force}
    key = uuid.uuid4().hex
    return _attempt(
        workspace,
        lambda client: _send_rerun(client, payload, key),
        lambda: _enqueue(workspace, "rerun", payload, key),
        queue and then is None,
        then,
    )


def cancel(
    config: Config, run: str, step: int | None, *, queue: bool
) -> Done[dict[str, Any]] | Queued:
    """Cancel a run, or one step of it and what it called."""
    payload: dict[str, Any] = {"run": run, "step": step}
    key = uuid.uuid4().hex

    def write_ahead() -> tuple[Entry, ...]:
        import time

        # What "cancel" meant when asked: the executions made by then, not a
        # colleague's re-run that reaches the server before this does.
        return _enqueue(config, "cancel", {**payload, "before": time.time()}, key)

    return _attempt(
        config, lambda client: _send_cancel(client, payload, key), write_ahead, queue, None
    )


def create_environment(
    config: Config, name: str, base: str | None, *, queue: bool
) -> Done[dict[str, Any]] | Queued:
    """Create environment ``name``, based on ``base`` if given."""
    payload = {"name": name, "base": base}
    return _attempt(
        config,
        lambda client: _send_create_environment(client, payload),
        lambda: _enqueue(config, "create_environment", payload, None),
        queue,
        None,
    )


def register(
    workspace: Workspace,
    modules: list[str],
    provenance: dict[str, Any] | None,
    *,
    queue: bool,
) -> Done[dict[str, list[str]]] | Queued:
    """Register the targets of ``modules`` in the workspace's environment, with the
    commit they came from; answer their names by repository."""
    from ..execution.loader import manifests

    payloads: list[dict[str, Any]] = [
        {
            "environment": workspace.environment,
            "repository": repository,
            "targets": targets,
            "provenance": provenance,
        }
        for repository, targets in manifests(modules).items()
    ]

    def send(client: Client) -> dict[str, list[str]]:
        for payload in payloads:
            _send_register(client, payload)
        return {p["repository"]: [t["name"] for t in p["targets"]] for p in payloads}

    def write_ahead() -> tuple[Entry, ...]:
        return tuple(e for p in payloads for e in _enqueue(workspace, "register", p, None))

    return _attempt(workspace, send, write_ahead, queue and not os.environ.get("CI"), None)


def send_queued(client: Client, config: Config, entry: Entry) -> dict[str, Any]:
    """Send an outbox entry (the outbox's replay): the operation's own request,
    with the key it was queued with. A queued environment that exists by now was
    made meanwhile, or by this entry on an earlier attempt: done."""
    p, key = entry.payload, entry.idempotency_key
    match entry.operation:
        case "submit":
            return _send_submit(client, p, key, _stored_blob(config))
        case "rerun":
            return _send_rerun(client, p, key)
        case "cancel":
            return _send_cancel(client, p, key)
        case "create_environment":
            try:
                return _send_create_environment(client, p)
            except Conflict:
                return {"name": p["name"], "existed": True}
        case "register":
            _send_register(client, p)
            return {"repository": p["repository"]}
    raise CofluxError(f"unknown queued operation {entry.operation!r}")


def check_target(
    client: Client,
    environment: str,
    repository: str,
    target: str,
    count: int,
    kind: str = "workflow",
) -> None:
    """Refuse, before submitting, a target of the wrong kind or arguments that don't fit."""
    from ..records.targets import TargetSpec, check_arguments

    spec = TargetSpec.from_dict(client.get_target(environment, repository, target))
    if spec.type != kind:
        hint = {
            "workflow": "only workflows start runs",
            "sensor": "start workflows with `coflux submit`",
        }[kind]
        raise InvalidInput(f"{repository}:{target} is a {spec.type}; {hint}")
    check_arguments(f"{repository}:{target}", spec.parameters, count)


# --- each operation's request, written once -------------------------------------------


def _send_submit(
    client: Client, p: dict[str, Any], key: str, blob: Callable[[str], bytes]
) -> dict[str, str]:
    """Arguments too big to travel inline go first, those the server lacks."""
    keys = [a["blob"] for a in p["arguments"] if isinstance(a, dict) and a.get("blob")]
    if keys:
        for missing in client.missing_blobs(keys):
            client.put_blob(missing, blob(missing))
    return client.submit(p["environment"], p["repository"], p["target"], p["arguments"], key)


def _send_rerun(client: Client, p: dict[str, Any], key: str) -> dict[str, str]:
    step = StepRef(p["run"], p["step"])
    return client.rerun(step, p["environment"], p.get("force", False), key)


def _send_cancel(client: Client, p: dict[str, Any], key: str) -> dict[str, Any]:
    target = StepRef(p["run"], p["step"]) if p.get("step") is not None else p["run"]
    return client.cancel(target, key, p.get("before"))


def _send_create_environment(client: Client, p: dict[str, Any]) -> dict[str, Any]:
    return client.create_environment(p["name"], p.get("base"))


def _send_register(client: Client, p: dict[str, Any]) -> None:
    # Entries queued before registrations carried their commit have no provenance.
    client.register(p["environment"], p["repository"], p["targets"], p.get("provenance"))


# --- trying, else queuing -------------------------------------------------------------


def _attempt(
    config: Config,
    send: Callable[[Client], A],
    write_ahead: Callable[[], tuple[Entry, ...]],
    queue: bool,
    then: Callable[[Client, A], None] | None,
) -> Done[A] | Queued:
    """``send`` on the workspace's server (then ``then``), else, when the server is
    unreachable before it answered and queuing is allowed, ``write_ahead``."""
    answered = False
    try:
        with open_client(config) as client:
            answer = send(client)
            answered = True
            if then is not None:
                then(client, answer)
    except ServerUnreachable:
        if answered or not _queueable(config, queue):
            raise
        return Queued(write_ahead())
    return Done(answer)


def _queueable(config: Config, queue: bool) -> bool:
    """Only with a shared server: the embedded one is always there."""
    return queue and config.server is not None


def _enqueue(
    config: Config, operation: str, payload: dict[str, Any], key: str | None
) -> tuple[Entry, ...]:
    from .outbox import enqueue  # the outbox replays through this module

    return (enqueue(config, operation, payload, key),)


def _stored_blob(config: Config) -> Callable[[str], bytes]:
    """A queued submission's argument blobs, kept in the local store when it was queued
    (the store is opened only for a blob the server lacks)."""

    def read(key: str) -> bytes:
        from ..cache import BlobStore

        store = BlobStore(config.data_dir / "cas")
        try:
            return store.get_bytes(key)
        except BlobError:
            # Gone from this machine and not on the server: the run can never
            # be made as asked, whatever a retry does.
            raise BlobError(
                f"argument blob {key} is gone from {store.root} and the server lacks it; "
                "submit the run again"
            ) from None

    return read
