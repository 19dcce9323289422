"""``coflux status``: the workspace as it stands, gathered for people and for ``--json``.

What is pending is listed exactly: queued operations (with the reason the last
attempt was refused for now), runs on the embedded server not pushed as they
stand, refusals not yet dismissed, and damage the local state survived.
"""

from __future__ import annotations

from typing import Any

from ..errors import CofluxError, ConfigError
from ..remote.client import Client
from .branches import known_branches, with_environment
from .config import Config
from .outbox import read_queue, refusals


def workspace_status(config: Config) -> dict[str, Any]:
    environment: dict[str, Any] = {"name": None, "source": None, "branch": None, "error": None}
    try:
        derived = with_environment(config)
        environment.update(
            name=derived.environment,
            source=derived.sources.get("environment"),
            branch=derived.branch,
        )
    except ConfigError as e:
        environment["error"] = str(e)
    entries, malformed = read_queue(config)
    reachable = None
    if config.server is not None:
        with Client(config.server, config.project, timeout=3, token=config.token) as client:
            try:
                client.health()
                reachable = True
            except CofluxError:
                reachable = False
    return {
        "server": {"url": config.server or "embedded", "reachable": reachable},
        "project": config.project,
        "environment": environment,
        "queued": [
            {
                "operation": e.id,
                "description": e.describe(),
                "created_at": e.created_at,
                "idempotency_key": e.idempotency_key,
                "last_error": e.last_error,
            }
            for e in entries
        ],
        "offline_runs": offline_runs(config),
        "refused": refusals(config),
        "damage": [
            {"operation": m.id, "message": f"{m.describe()} is malformed ({m.reason})"}
            for m in malformed
        ]
        + notices(config),
        "branches": known_branches(config),
        "store": _store(config),
    }


def _store(config: Config) -> dict[str, Any]:
    root = config.data_dir / "cas"
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return {"path": str(root), "blobs": len(files), "bytes": sum(p.stat().st_size for p in files)}


def offline_runs(config: Config) -> list[dict[str, Any]]:
    """The embedded server's runs that ``coflux sync`` has yet to push (or that wait)."""
    if config.server is None or not (config.data_dir / "server" / "projects").exists():
        return []
    import dataclasses

    from .connection import open_client
    from .push import plan

    with open_client(dataclasses.replace(config, server=None)) as embedded:
        return [
            {"id": c.id, "environment": c.environment, "state": c.state, "reason": c.reason}
            for c in plan(embedded, config)
        ]


def notices(config: Config) -> list[dict[str, Any]]:
    from .state_connection import reading

    with reading(config.data_dir) as c:
        if c is None:
            return []
        rows = c.execute(
            "SELECT message FROM notices WHERE dismissed_at IS NULL ORDER BY id"
        ).fetchall()
    return [{"operation": None, "message": message} for (message,) in rows]
