"""A sensor's checkpoint, bound to the sensor's signature.

``cf.checkpoint(interval, next_tick)`` records the arguments a restarted
sensor starts with. They are bound to the sensor's parameters here, in the
execution, with defaults filled in, so a sensor started with fewer arguments
than it has parameters (``coflux sensors start flows ticker``) can checkpoint
all of them, and a checkpoint that could never be called fails where it is
made rather than at every restart.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import InvalidInput


def bind_checkpoint(signature: inspect.Signature, arguments: list[Any]) -> list[Any]:
    """The positional arguments a restart calls the sensor with."""
    try:
        bound = signature.bind(*arguments)
    except TypeError as e:
        raise InvalidInput(f"checkpoint: {e} (it takes the sensor's parameters)") from None
    bound.apply_defaults()
    return list(bound.args)
