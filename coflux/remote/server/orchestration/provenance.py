"""Provenance as agents and clients report it: the git commit of their code, and dirtiness.

Nothing here is trusted for more than display: it says which commit a
registration came from and which commit's code ran an execution.
"""

from __future__ import annotations

import re
from typing import Any

from ....errors import InvalidInput

_COMMIT = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")

Provenance = tuple[str | None, bool | None]
UNKNOWN: Provenance = (None, None)


def provenance_of(value: Any) -> Provenance:
    """(commit, dirty) from ``{"commit": "<hex>" | null, "dirty": bool}`` (None: unknown)."""
    if value is None:
        return UNKNOWN
    if not isinstance(value, dict) or set(value) - {"commit", "dirty"}:
        raise InvalidInput('provenance must be {"commit": HEX or null, "dirty": true or false}')
    commit, dirty = value.get("commit"), value.get("dirty")
    if commit is not None and (not isinstance(commit, str) or not _COMMIT.match(commit)):
        raise InvalidInput(f"invalid commit in provenance: {str(commit)[:80]!r}")
    if dirty is not None and not isinstance(dirty, bool):
        raise InvalidInput("dirty in provenance must be true or false")
    return commit, dirty
