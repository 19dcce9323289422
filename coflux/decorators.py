"""``@workflow`` and ``@task``: turn plain functions into Coflux targets.

Inside an execution, calling a target schedules a step and blocks for its
result, and ``target.submit(...)`` returns an :class:`~coflux.context.Execution`
at once. Outside Coflux (a REPL, a unit test) a target is just its function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from . import context
from .context import Execution
from .errors import InvalidInput
from .records.placement import validate_tags
from .records.states import TargetType
from .records.targets import CacheOptions, Parameter, RetryOptions, TargetOptions, TargetSpec

#: ``requires=``: a tag's value, ``True``/``False``, or a list of values (any one will do).
Requires = dict[str, str | bool | list[str | bool]]

P = ParamSpec("P")
T = TypeVar("T")

_KINDS: dict[
    inspect._ParameterKind, Literal["positional", "var_positional", "keyword_only", "var_keyword"]
] = {
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


#: The kinds of parameter a positional argument fills.
_BY_POSITION = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


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


Names = bool | str | Iterable[str]


def _names(option: str, value: Names, names: list[str], target: str) -> bool | tuple[str, ...]:
    """``True``/``False``, or parameter names: a list, a set (as the Coflux 0.6 docs
    write ``wait={"param"}``; taken in parameter order), or one comma-separated string."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        selected = tuple(w.strip() for w in value.split(",") if w.strip())
    elif isinstance(value, (set, frozenset)) and all(isinstance(w, str) for w in value):
        order = {name: i for i, name in enumerate(names)}
        selected = tuple(sorted(value, key=lambda w: (order.get(w, len(order)), w)))
    elif isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value):
        selected = tuple(value)
    else:
        raise InvalidInput(f"{target}: {option} takes True or parameter names, not {value!r}")
    unknown = [w for w in selected if w not in names]
    if unknown:
        raise InvalidInput(f"{target}: {option} names unknown parameter(s) {', '.join(unknown)}")
    return selected


def _seconds(option: str, value: Any, target: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidInput(
            f"{target}: {option} must be a number of seconds or a timedelta, not {value!r}"
        )
    return float(value)


def _cache_option(
    cache: bool | float | timedelta,
    params: Names | None,
    namespace: str | None,
    version: str | int | None,
    names: list[str],
    target: str,
) -> CacheOptions | None:
    if cache is False or cache is None:
        if params is not None or namespace is not None or version is not None:
            raise InvalidInput(f"{target}: cache_params/namespace/version need cache=True")
        return None
    max_age = None if cache is True else _seconds("cache", cache, target)
    selected = None if params is None else _names("cache_params", params, names, target)
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise InvalidInput(f"{target}: cache_namespace must be a non-empty string")
    return CacheOptions(
        max_age=max_age,
        params=None
        if selected is None or selected is True
        else (() if selected is False else selected),
        namespace=namespace,
        version=None if version is None else str(version),
    )


def _defer_option(
    defer: bool, params: Names | None, names: list[str], target: str
) -> bool | tuple[str, ...]:
    if not isinstance(defer, bool):
        raise InvalidInput(f"{target}: defer takes True or False, not {defer!r}")
    if not defer:
        if params is not None:
            raise InvalidInput(f"{target}: defer_params needs defer=True")
        return False
    return True if params is None else _names("defer_params", params, names, target)


def _retry_option(retries: Any, target: str) -> RetryOptions:
    def count(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"{target}: retries must be a count of 0 or more, not {value!r}")
        return value

    if isinstance(retries, tuple) and len(retries) in (2, 3):
        delays = [_seconds("retry delay", d, target) for d in retries[1:]]
        low, high = delays[0], delays[-1]
        if high < low:
            raise InvalidInput(f"{target}: retries=(n, min, max) needs min <= max")
        return RetryOptions(count(retries[0]), low, high)
    return RetryOptions(count(retries))


class Target(Generic[P, T]):
    """A decorated function: a workflow or a task of its module's repository."""

    def __init__(
        self,
        fn: Callable[P, T],
        type: TargetType,
        *,
        name: str | None = None,
        repository: str | None = None,
        wait: Names = False,
        cache: bool | float | timedelta = False,
        cache_params: Names | None = None,
        cache_namespace: str | None = None,
        cache_version: str | int | None = None,
        memo: Names = False,
        retries: int | tuple[Any, ...] = 0,
        delay: float | timedelta = 0,
        defer: bool = False,
        defer_params: Names | None = None,
        timeout: float | timedelta = 0,
        requires: Requires | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.repository = repository or fn.__module__
        self.signature = inspect.signature(fn)
        #: How many arguments a call passing each parameter by position gives;
        #: None unless every parameter may be given so (no ``*args``, ``**kw``
        #: or keyword-only ones).
        self._all_positional: int | None = (
            len(self.signature.parameters)
            if all(p.kind in _BY_POSITION for p in self.signature.parameters.values())
            else None
        )
        parameters = _parameters(self.signature, self.name)
        names = [p.name for p in parameters]
        options = TargetOptions(
            wait=_names("wait", wait, names, self.name),
            cache=_cache_option(
                cache, cache_params, cache_namespace, cache_version, names, self.name
            ),
            memo=_names("memo", memo, names, self.name),
            retries=_retry_option(retries, self.name),
            delay=_seconds("delay", delay, self.name),
            defer=_defer_option(defer, defer_params, names, self.name),
            timeout=_seconds("timeout", timeout, self.name),
            requires=validate_tags({} if requires is None else requires, f"{self.name}: requires"),
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
        if not kwargs and len(args) == self._all_positional:
            # Every parameter given by position: what binding gives, without
            # binding (a sixth of a submit's cost in a fan-out).
            return list(args)
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
    *,
    name: str | None = None,
    wait: Names = False,
    cache: bool | float | timedelta = False,
    cache_params: Names | None = None,
    cache_namespace: str | None = None,
    cache_version: str | int | None = None,
    memo: Names = False,
    retries: int | tuple[Any, ...] = 0,
    delay: float | timedelta = 0,
    defer: bool = False,
    defer_params: Names | None = None,
    timeout: float | timedelta = 0,
    requires: Requires | None = None,
) -> Callable[[Callable[P, T]], Target[P, T]]:
    """Mark a function as a workflow: a target runs can be started from.

    Takes the same options as :func:`task`.
    """
    return _decorator("workflow", **{k: v for k, v in locals().items()})


def task(
    *,
    name: str | None = None,
    wait: Names = False,
    cache: bool | float | timedelta = False,
    cache_params: Names | None = None,
    cache_namespace: str | None = None,
    cache_version: str | int | None = None,
    memo: Names = False,
    retries: int | tuple[Any, ...] = 0,
    delay: float | timedelta = 0,
    defer: bool = False,
    defer_params: Names | None = None,
    timeout: float | timedelta = 0,
    requires: Requires | None = None,
) -> Callable[[Callable[P, T]], Target[P, T]]:
    """Mark a function as a task: a step that workflows and other tasks call.

    - ``wait``: hold the step until executions passed to it have finished
      (``True``, or the names of the parameters to wait for).
    - ``cache``: reuse a succeeded result of a call with the same key: ``True``,
      or a max age in seconds or as a ``timedelta``. The key is over
      ``cache_namespace`` (default ``repository:target``), ``cache_version`` and
      the arguments of ``cache_params`` (default: all), by position.
    - ``memo``: within a run, a call with the same arguments (or those named)
      refers to the earlier step instead of making a new one.
    - ``retries``: ``n``, ``(n, delay)`` or ``(n, min, max)`` with delays
      growing from min to max; failed and abandoned executions are retried.
    - ``delay``: hold each new execution this long (seconds or ``timedelta``).
    - ``defer``: a newer call with the same arguments (or those of
      ``defer_params``) replaces one that has not started yet; whoever waited
      for the old one gets the new one's result.
    - ``timeout``: seconds (or a ``timedelta``) an execution may run; then its
      agent kills its processes and it fails with ``coflux.Timeout`` (retried
      if ``retries`` allow).
    - ``requires``: placement tags (``{"gpu": "a100", "fast": True, "region":
      ["eu", "us"]}``): only an agent whose ``--provides`` give, for each of
      them, one of the values listed executes the step; until one connects, it
      stays ``queued``.
    """
    return _decorator("task", **{k: v for k, v in locals().items()})


def sensor(*, name: str | None = None, **options: Any) -> Callable[[Callable[P, T]], Target[P, T]]:
    """Mark a function as a sensor: started once (``coflux sensors start``), kept running.

    When a sensor's execution ends (it returns, fails, or its agent is lost),
    the orchestrator starts it again with the arguments of its last
    ``cf.checkpoint(...)``, at most once a second, until it is stopped.
    """
    return _decorator("sensor", name=name, **options)


def stub(
    repository: str,
    *,
    name: str | None = None,
    type: TargetType = "task",
    **options: Any,
) -> Callable[[Callable[P, T]], Target[P, T]]:
    """Declare a target of another repository, hosted by another agent, to call it from here.

    The function's signature describes the target; its body runs only outside
    Coflux (a stand-in for tests). ``@cf.stub("billing.tasks") def charge(...)``.
    """
    from .records.names import validate_repository_name

    validate_repository_name(repository)
    return _decorator(type, name=name, repository=repository, **options)
