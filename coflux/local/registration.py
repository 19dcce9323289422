"""Registering repositories: import each module, build its manifest, send it."""

from __future__ import annotations

from ..loader import import_repository, manifest
from ..remote.client import Client


def register_modules(client: Client, environment: str, modules: list[str]) -> dict[str, list[str]]:
    """Register each module's targets in ``environment``; return target names by repository."""
    registered: dict[str, list[str]] = {}
    for spec in modules:
        module = import_repository(spec)
        targets = manifest(module)
        client.register(environment, module.__name__, targets)
        registered[module.__name__] = [t["name"] for t in targets]
    return registered
