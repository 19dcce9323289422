"""Reaching the workspace's server: the configured one, or the embedded default."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..config import Config
from ..remote.client import Client
from .branches import ensure_environment


@contextlib.contextmanager
def open_client(config: Config) -> Iterator[Client]:
    """A client of the workspace's project; a branch's environment exists once it is open."""
    with _server_url(config) as url, Client(url, config.project) as client:
        ensure_environment(client, config)
        yield client


@contextlib.contextmanager
def _server_url(config: Config) -> Iterator[str]:
    if config.server:
        yield config.server
        return
    from .embedded import embedded_server

    with embedded_server(config) as url:
        yield url
