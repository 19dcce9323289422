"""Fixtures of the in-process orchestration tests (see ``harness``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from .harness import Project, migrated_database, project


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("template"))


@pytest.fixture
def start(
    tmp_path: Path, template: Path
) -> Callable[[list[dict[str, Any]]], AbstractAsyncContextManager[Project]]:
    """``async with start(targets) as p``: a fresh project with ``targets`` registered."""
    return lambda targets: project(tmp_path, template, targets)
