"""Reaching the workspace's server: the configured one, or the embedded default."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..remote.client import Client
from .branches import ensure_environment
from .config import Config


@contextlib.contextmanager
def open_client(config: Config) -> Iterator[Client]:
    """A client of the workspace's project; a branch's environment exists once it is open.

    While ``coflux dev`` works offline, the workspace's commands use the
    embedded server it runs on (``coflux sync`` pushes what they made).
    """
    with _server_url(config) as url, Client(url, config.project, token=config.token) as client:
        ensure_environment(client, config)
        yield client


def offline_marker(config: Config) -> Path:
    """Present while a `coflux dev` of this workspace works offline: its process ID."""
    return config.data_dir / "offline.pid"


def working_offline(config: Config) -> bool:
    marker = offline_marker(config)
    try:
        os.kill(int(marker.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _server_url(config: Config) -> Iterator[str]:
    if config.server and not working_offline(config):
        yield config.server
        return
    from .embedded import embedded_server

    with embedded_server(config) as url:
        yield url
