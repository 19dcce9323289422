"""Names of projects, environments, repositories and targets, checked where they enter."""

from __future__ import annotations

import re

from ..errors import InvalidInput

# Matched whole (``fullmatch``): ``$`` also matches before a final newline, so
# "p2\n" passed as a name (and became a file name with a newline in it).
_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_REPOSITORY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_TARGET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_project_name(name: str) -> str:
    """Project names become file names on the server, so they are strict."""
    if not isinstance(name, str) or not _PROJECT_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid project name {name!r}: use letters, digits, '-' and '_' "
            "(at most 63, starting with a letter or digit)"
        )
    return name


def validate_environment_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or len(name) > 100
        or not _ENVIRONMENT_NAME.fullmatch(name)
        or any(part in (".", "..") for part in name.split("/"))
    ):
        raise InvalidInput(
            f"invalid environment name {name!r}: use letters, digits, '.', '_', '-' and '/' "
            "between parts (at most 100 characters)"
        )
    return name


def validate_repository_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > 200 or not _REPOSITORY_NAME.fullmatch(name):
        raise InvalidInput(f"invalid repository name {name!r}: expected a dotted module name")
    return name


def validate_target_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > 200 or not _TARGET_NAME.fullmatch(name):
        raise InvalidInput(f"invalid target name {name!r}: expected a Python identifier")
    return name
