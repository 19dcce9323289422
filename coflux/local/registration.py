"""Registering repositories: import each module, build its manifest, send it."""

from __future__ import annotations

from typing import Any

from ..execution.loader import manifests
from ..remote.client import Client


def register_modules(
    client: Client,
    environment: str,
    modules: list[str],
    provenance: dict[str, Any] | None = None,
) -> dict[str, list[str]]:
    """Register each module's targets in ``environment``, with the commit they came
    from; return target names by repository."""
    registered: dict[str, list[str]] = {}
    for repository, targets in manifests(modules).items():
        client.register(environment, repository, targets, provenance)
        registered[repository] = [t["name"] for t in targets]
    return registered
