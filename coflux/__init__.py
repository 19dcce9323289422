"""Coflux: plain-Python workflows with a shared server and agents anywhere.

import coflux as cf

@cf.task()
def add(a: int, b: int) -> int:
    return a + b

@cf.workflow()
def total(numbers: list[int]) -> int:
    return sum(add(n, 1) for n in numbers)
"""

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
from .errors import (
    Abandoned,
    Cancelled,
    CofluxError,
    ExecutionError,
    RemoteError,
    SerializationError,
)
from .version import __version__ as __version__

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
