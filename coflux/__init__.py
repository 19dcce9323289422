"""Coflux: plain-Python workflows with a shared server and agents anywhere.

import coflux as cf

@cf.task()
def add(a: int, b: int) -> int:
    return a + b

@cf.workflow()
def total(numbers: list[int]) -> int:
    return sum(add(n, 1) for n in numbers)

The SDK's names are imported when first used (PEP 562 ``__getattr__``):
``cf.task``, ``from coflux import workflow`` and ``from coflux import *`` work
as if they were imported here, and type checkers read the ``TYPE_CHECKING``
imports below. What this buys: the ``coflux`` command imports this package
(it is ``coflux.cli``'s parent) and never uses the SDK, whose import (the
execution context, assets, the cache) was a bare Python start and a half of
every cold read command (issue 25).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Errors and the version are light (the standard library only), and a
# ``coflux.errors`` class is caught by the CLI itself: imported as before.
from .errors import (
    Abandoned,
    Cancelled,
    CofluxError,
    ExecutionError,
    RemoteError,
    SerializationError,
)
from .version import __version__ as __version__

if TYPE_CHECKING:
    from . import assets as assets
    from . import cache as cache
    from . import context as context
    from . import decorators as decorators
    from . import records as records
    from .context import (
        Asset,
        Execution,
        checkpoint,
        execution_id,
        log_debug,
        log_error,
        log_info,
        log_warning,
        persist_asset,
        restore_asset,
        suspend,
        suspense,
    )
    from .decorators import Target, sensor, stub, task, workflow

__all__ = [
    "Abandoned",
    "Asset",
    "Cancelled",
    "CofluxError",
    "Execution",
    "ExecutionError",
    "RemoteError",
    "SerializationError",
    "Target",
    "checkpoint",
    "execution_id",
    "log_debug",
    "log_error",
    "log_info",
    "log_warning",
    "persist_asset",
    "restore_asset",
    "sensor",
    "stub",
    "suspend",
    "suspense",
    "task",
    "workflow",
]

#: Each lazily imported name, and the submodule that defines it.
_LAZY = {
    **dict.fromkeys(
        (
            "Asset",
            "Execution",
            "checkpoint",
            "execution_id",
            "log_debug",
            "log_error",
            "log_info",
            "log_warning",
            "persist_asset",
            "restore_asset",
            "suspend",
            "suspense",
        ),
        "context",
    ),
    **dict.fromkeys(("Target", "sensor", "stub", "task", "workflow"), "decorators"),
}
#: Submodules that ``import coflux`` used to import, so ``cf.context`` (say)
#: was an attribute without importing it by name; they still are.
_SUBMODULES = frozenset(("assets", "cache", "context", "decorators", "records"))


# Hidden from type checkers, which read the imports above: a module-level
# ``__getattr__`` would make any misspelt ``cf.tsak`` an ``Any`` to them.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        elif name in _SUBMODULES:
            value = importlib.import_module(f".{name}", __name__)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value  # once: later look-ups don't come back here
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
