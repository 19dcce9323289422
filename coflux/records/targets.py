"""Targets as registered: parameters, options (cache, retry, placement) and specs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidInput
from .placement import Tags, validate_tags
from .states import TargetType


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: str | None = None
    default: str | None = None  # repr of the default, None when required
    kind: Literal["positional", "var_positional", "keyword_only", "var_keyword"] = "positional"

    @property
    def required(self) -> bool:
        return self.default is None and self.kind in ("positional", "keyword_only")


@dataclass(frozen=True)
class CacheOptions:
    """``cache=``: reuse a succeeded result with the same key (and not older than ``max_age``)."""

    max_age: float | None = None  # seconds; None: forever
    params: tuple[str, ...] | None = None  # None: all parameters
    namespace: str | None = None  # None: "repository:target"
    version: str | None = None


@dataclass(frozen=True)
class RetryOptions:
    """``retries=``: how many more attempts after a failure, and the delays before them."""

    limit: int = 0
    delay_min: float = 0.0
    delay_max: float = 0.0

    def delay(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based): growing from min to max."""
        if self.limit <= 1:
            return self.delay_min
        fraction = (retry - 1) / (self.limit - 1)
        return self.delay_min + (self.delay_max - self.delay_min) * fraction


@dataclass(frozen=True)
class TargetOptions:
    """Options given to ``@task``/``@workflow``; each is decided by the server."""

    #: Wait for execution arguments to resolve before starting: ``True`` for
    #: all parameters, or the names of the parameters to wait for.
    wait: bool | tuple[str, ...] = False
    cache: CacheOptions | None = None
    #: Within a run, reuse the step of an earlier call with the same arguments:
    #: ``True`` for all parameters, or the names of the parameters that count.
    memo: bool | tuple[str, ...] = False
    retries: RetryOptions = field(default_factory=RetryOptions)
    #: Seconds to hold a new execution in ``queued`` before it may start.
    delay: float = 0.0
    #: A newer call with the same arguments (all, or those named) replaces one
    #: that has not started yet.
    defer: bool | tuple[str, ...] = False
    #: Seconds an execution may run before its agent kills it (0: no limit);
    #: it then fails with ``coflux.Timeout``, and ``retries`` apply.
    timeout: float = 0.0
    #: Tags an agent must provide (every key with the same value) to be given
    #: an execution of this target.
    requires: Tags = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def names(value: bool | tuple[str, ...]) -> Any:
            return list(value) if isinstance(value, tuple) else value

        out: dict[str, Any] = {
            "wait": names(self.wait),
            "memo": names(self.memo),
            "defer": names(self.defer),
        }
        if self.cache is not None:
            out["cache"] = {
                "max_age": self.cache.max_age,
                "params": list(self.cache.params) if self.cache.params is not None else None,
                "namespace": self.cache.namespace,
                "version": self.cache.version,
            }
        if self.retries.limit:
            out["retries"] = {
                "limit": self.retries.limit,
                "delay_min": self.retries.delay_min,
                "delay_max": self.retries.delay_max,
            }
        if self.delay:
            out["delay"] = self.delay
        if self.timeout:
            out["timeout"] = self.timeout
        if self.requires:
            out["requires"] = dict(self.requires)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetOptions:
        def names(value: Any) -> bool | tuple[str, ...]:
            return tuple(str(v) for v in value) if isinstance(value, list) else bool(value)

        cache = data.get("cache")
        retries = data.get("retries") or {}
        return cls(
            wait=names(data.get("wait", False)),
            cache=CacheOptions(
                max_age=None if cache.get("max_age") is None else float(cache["max_age"]),
                params=None if cache.get("params") is None else tuple(cache["params"]),
                namespace=cache.get("namespace"),
                version=None if cache.get("version") is None else str(cache["version"]),
            )
            if isinstance(cache, dict)
            else None,
            memo=names(data.get("memo", False)),
            retries=RetryOptions(
                int(retries.get("limit", 0)),
                float(retries.get("delay_min", 0)),
                float(retries.get("delay_max", 0)),
            ),
            delay=float(data.get("delay") or 0),
            defer=names(data.get("defer", False)),
            timeout=float(data.get("timeout") or 0),
            requires=validate_tags(
                {} if data.get("requires") is None else data["requires"], "requires"
            ),
        )


@dataclass(frozen=True)
class TargetSpec:
    """A target as registered in a manifest."""

    name: str
    type: TargetType
    parameters: tuple[Parameter, ...] = ()
    options: TargetOptions = field(default_factory=TargetOptions)
    docstring: str | None = None
    code_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "parameters": [
                {"name": p.name, "annotation": p.annotation, "default": p.default, "kind": p.kind}
                for p in self.parameters
            ],
            "options": self.options.to_dict(),
            "docstring": self.docstring,
            "code_hash": self.code_hash,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetSpec:
        return cls(
            name=data["name"],
            type=data["type"],
            parameters=tuple(Parameter(**p) for p in data.get("parameters") or ()),
            options=TargetOptions.from_dict(data.get("options") or {}),
            docstring=data.get("docstring"),
            code_hash=data.get("code_hash"),
        )


def check_arguments(target: str, parameters: tuple[Parameter, ...], count: int) -> None:
    """Raise ``InvalidInput`` when ``count`` positional arguments don't fit ``parameters``."""
    positional = [p for p in parameters if p.kind == "positional"]
    variadic = any(p.kind == "var_positional" for p in parameters)
    maximum = None if variadic else len(positional)
    minimum = sum(1 for p in positional if p.required)
    if count < minimum or (maximum is not None and count > maximum):
        names = ", ".join(p.name for p in positional) or "none"
        expected = (
            str(minimum)
            if minimum == maximum
            else f"{minimum} to {maximum}"
            if maximum is not None
            else f"at least {minimum}"
        )
        raise InvalidInput(
            f"{target} takes {expected} argument{'' if expected == '1' else 's'} "
            f"({names}); {count} given"
        )
