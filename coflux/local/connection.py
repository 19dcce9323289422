"""Reaching the workspace's server: the configured one, or the embedded default."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..config import Config
from ..remote.client import Client


@contextlib.contextmanager
def open_client(config: Config) -> Iterator[Client]:
    if config.server:
        with Client(config.server, config.project) as client:
            yield client
        return
    from .embedded import embedded_server

    with embedded_server(config) as url, Client(url, config.project) as client:
        yield client
