"""``@workflow`` and ``@task``: turn plain functions into Coflux targets.

Inside an execution, calling a target schedules a step and blocks for its
result, and ``target.submit(...)`` returns an :class:`~coflux.models.Execution`
at once. Outside Coflux (a REPL, a unit test) a target is just its function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from . import context
from .context import Execution
from .errors import InvalidInput
from .models import Parameter, TargetOptions, TargetSpec, TargetType

P = ParamSpec("P")
T = TypeVar("T")

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


def _annotation(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _parameters(signature: inspect.Signature, name: str) -> tuple[Parameter, ...]:
    parameters = []
    for p in signature.parameters.values():
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD):
            # Steps take arguments by position, which keeps cache keys stable
            # when a parameter is renamed.
            raise InvalidInput(
                f"{name}: parameter {p.name!r} is keyword-only; targets take positional parameters"
            )
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        parameters.append(Parameter(p.name, _annotation(p.annotation), default, _KINDS[p.kind]))
    return tuple(parameters)


def _wait_option(wait: bool | str | list[str] | tuple[str, ...], names: set[str], target: str):
    if isinstance(wait, bool):
        return wait
    selected = tuple(w.strip() for w in wait.split(",")) if isinstance(wait, str) else tuple(wait)
    unknown = [w for w in selected if w not in names]
    if unknown:
        raise InvalidInput(f"{target}: wait names unknown parameter(s) {', '.join(unknown)}")
    return selected


class Target(Generic[P, T]):
    """A decorated function: a workflow or a task of its module's repository."""

    def __init__(
        self,
        fn: Callable[P, T],
        type: TargetType,
        *,
        name: str | None = None,
        wait: bool | str | list[str] | tuple[str, ...] = False,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.repository = fn.__module__
        self.signature = inspect.signature(fn)
        parameters = _parameters(self.signature, self.name)
        options = TargetOptions(
            wait=_wait_option(wait, {p.name for p in parameters}, self.name),
        )
        self.spec = TargetSpec(
            name=self.name,
            type=type,
            parameters=parameters,
            options=options,
            docstring=inspect.getdoc(fn),
        )
        functools.update_wrapper(self, fn)

    @property
    def type(self) -> TargetType:
        return self.spec.type

    def _positional(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidInput(f"{self.name}: {e}") from None
        bound.apply_defaults()
        return list(bound.args)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Execution[T]:
        """Schedule a step and return its execution without waiting for it."""
        if not context.in_execution():
            return _Completed(self.fn(*args, **kwargs))
        return context.schedule(self.repository, self.spec, self._positional(args, kwargs))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        if not context.in_execution():
            return self.fn(*args, **kwargs)
        return context.call(self.repository, self.spec, self._positional(args, kwargs))

    def __repr__(self) -> str:
        return f"<{self.spec.type} {self.repository}:{self.name}>"


class _Completed(Execution[T]):
    """What ``submit`` returns outside Coflux: the function already ran."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        super().__init__(id="local")
        self._value = value

    def result(self) -> T:
        return self._value


def _decorator(type: TargetType, **options: Any) -> Callable[[Callable[P, T]], Target[P, T]]:
    def decorate(fn: Callable[P, T]) -> Target[P, T]:
        if not callable(fn) or isinstance(fn, Target):
            raise InvalidInput(f"@{type} decorates a plain function, not {fn!r}")
        return Target(fn, type, **options)

    return decorate


def workflow(
    *, name: str | None = None, wait: bool | str | list[str] = False
) -> Callable[[Callable[P, T]], Target[P, T]]:
    """Mark a function as a workflow: a target runs can be started from."""
    return _decorator("workflow", name=name, wait=wait)


def task(
    *, name: str | None = None, wait: bool | str | list[str] = False
) -> Callable[[Callable[P, T]], Target[P, T]]:
    """Mark a function as a task: a step that workflows and other tasks call."""
    return _decorator("task", name=name, wait=wait)
