"""Parameter values that need no conversion skip pydantic (typer 0.29's coercion).

typer 0.29 converts every parameter's value with a pydantic ``TypeAdapter``,
built the first time the parameter is processed, even for a flag left unset
(its ``None``): importing pydantic and building the adapters was two bare
Python starts of every cold read command (``runs list --json`` builds nine),
to hand back the ``str`` the command line already holds (issue 25).

:func:`install` wraps typer's ``build_runtime_param`` so that a parameter's
adapter is built only when its value needs one. A value is passed through
untouched only where the adapter would return it unchanged:

- ``None`` (typer's own ``RuntimeParam.coerce`` answers it before any adapter);
- a ``str`` for a plain ``str`` parameter (no parser, choices, path or file);
- a ``bool`` for a ``bool`` parameter;
- an ``int`` for a plain ``int`` parameter, or a string of up to 18 ASCII
  digits, which ``int()`` reads as pydantic does, within its ``min``/``max``
  (no clamp).

Anything else (a value out of range, ``-3``, ``abc``, a path, a choice) goes to
typer's adapter exactly as before, so every conversion and every error message
is typer's own. Older typers (before 0.29) convert with click's types and
import no pydantic; there :func:`install` finds nothing to wrap and does
nothing.
"""

from __future__ import annotations

from typing import Any


def _passes_through(descriptor: Any, value: Any) -> tuple[bool, Any]:
    """``(True, converted)`` when typer's adapter would give ``converted`` for ``value``
    without pydantic; ``(False, None)`` when the adapter must decide."""
    info = descriptor.parameter_info
    if info.parser is not None or descriptor.is_file or descriptor.is_choice:
        return False, None
    annotation = descriptor.annotation
    if annotation is str and not descriptor.is_path:
        return type(value) is str, value
    if annotation is bool:
        return type(value) is bool, value
    if annotation is int and not info.clamp:
        # (More than 18 digits is left to pydantic: int() refuses 4,300 and more.)
        if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 18:
            value = int(value)
        if type(value) is not int:
            return False, None
        in_range = (info.min is None or value >= info.min) and (
            info.max is None or value <= info.max
        )
        return in_range, value
    return False, None


def install() -> None:
    """Make typer (0.29) build a parameter's pydantic adapter only when it is needed."""
    try:
        from typer import _coercion, core
    except ImportError:  # typer before 0.29: click's types, no pydantic
        return
    build: Any = getattr(core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if build is None or base is None or getattr(build, "_coflux_lazy", False):
        return

    class LazyRuntimeParam(base):  # type: ignore[misc, valid-type]
        """Typer's runtime parameter, its adapter built on the first value that needs it."""

        def __init__(self, descriptor: Any) -> None:
            super().__init__(
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
            )
            object.__setattr__(self, "_descriptor", descriptor)  # typer's are frozen dataclasses
            object.__setattr__(self, "_built", None)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            passes, converted = _passes_through(self._descriptor, value)
            if passes:
                return converted
            if self._built is None:
                object.__setattr__(self, "_built", build(self._descriptor))
            return self._built._coerce_value(value, param=param, ctx=ctx)

    def lazy_build(descriptor: Any) -> Any:
        return LazyRuntimeParam(descriptor)

    lazy_build._coflux_lazy = True  # type: ignore[attr-defined]
    core.build_runtime_param = lazy_build
