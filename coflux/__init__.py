"""Coflux: plain-Python workflows with a shared server and agents anywhere.

    import coflux as cf

    @cf.task()
    def add(a: int, b: int) -> int:
        return a + b

    @cf.workflow()
    def total(numbers: list[int]) -> int:
        return sum(add(n, 1) for n in numbers)
"""

from .context import execution_id, log_debug, log_error, log_info, log_warning
from .decorators import Target, task, workflow
from .errors import (
    Abandoned,
    Cancelled,
    CofluxError,
    ExecutionError,
    RemoteError,
    SerializationError,
)
from .models import Execution

__version__ = "0.1.0"

__all__ = [
    "Abandoned",
    "Cancelled",
    "CofluxError",
    "Execution",
    "ExecutionError",
    "RemoteError",
    "SerializationError",
    "Target",
    "execution_id",
    "log_debug",
    "log_error",
    "log_info",
    "log_warning",
    "task",
    "workflow",
]
