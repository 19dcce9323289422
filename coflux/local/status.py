"""``coflux status``: the workspace as it stands, gathered for people and for ``--json``."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..errors import CofluxError, ConfigError
from ..remote.client import Client
from .branches import known_branches, with_environment
from .outbox import pending


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
            }
            for e in pending(config)
        ],
        "branches": known_branches(config),
        "store": _store(config),
    }


def _store(config: Config) -> dict[str, Any]:
    root = config.data_dir / "cas"
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return {"path": str(root), "blobs": len(files), "bytes": sum(p.stat().st_size for p in files)}
