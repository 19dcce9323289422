"""Plain records shared by every layer: states, references, values, target specs.

Nothing here does I/O or imports more than the standard library, so the SDK,
the client and the server all speak one vocabulary and ``import coflux`` stays
fast."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidInput

# Placement tags have their own module; these names stay importable from here.
from .placement import Tags, parse_tags, satisfies, validate_tags  # noqa: F401

# --- the agent connection's close codes ----------------------------------------

#: The server heard nothing from the session for its agent timeout.
CLOSE_TIMED_OUT = 4408
#: A newer connection of the same session replaced this one.
CLOSE_REPLACED = 4409
#: The project's orchestrator moved to another server process (PostgreSQL
#: leases): reconnect, and be forwarded there.
CLOSE_MOVED = 4503
#: Other 44xx codes refuse the agent (a bad hello, an unknown project, a
#: revoked token): reconnecting can't help.
RECONNECTABLE_CLOSE_CODES = (CLOSE_TIMED_OUT, CLOSE_REPLACED, CLOSE_MOVED)
#: The largest JSON request body, and agent WebSocket message, a server accepts
#: (bytes); an agent never sends a larger one (it closes the connection with 1009).
MAX_MESSAGE_BYTES = 1024 * 1024

# --- execution states (docs/state-machine.md) ---------------------------------

ExecutionState = Literal[
    "queued",
    "assigned",
    "succeeded",
    "failed",
    "abandoned",
    "cancelled",
    "suspended",
    "cached",
    "deferred",
    "spawned",
]
#: States after which an execution never changes again.
TERMINAL_STATES: frozenset[str] = frozenset(
    {"succeeded", "failed", "abandoned", "cancelled", "suspended", "cached", "deferred", "spawned"}
)
#: The transitions an execution may make, the one place they are decided.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"assigned", "cached", "deferred", "cancelled", "spawned"}),
    "assigned": frozenset({"succeeded", "failed", "abandoned", "cancelled", "suspended", "queued"}),
}
RunState = Literal["running", "succeeded", "failed", "cancelled"]


def run_state_of(execution_state: str) -> RunState:
    """The state of a run, from the state of its initial step's latest execution."""
    if execution_state in ("succeeded", "cached"):
        return "succeeded"
    if execution_state in ("failed", "abandoned"):
        return "failed"
    if execution_state == "cancelled":
        return "cancelled"
    return "running"


TargetType = Literal["workflow", "task", "sensor"]
#: Targets a run can be started from (a sensor's run keeps it running).
RUNNABLE_TYPES = ("workflow", "sensor")

# --- names -------------------------------------------------------------------

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


# --- references --------------------------------------------------------------

# Run IDs are random, globally unique (runs made on two machines never collide)
# and easy to read aloud: Crockford's base32 without I, L, O, U.
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RUN_ID_LENGTH = 10
_RUN_ID = re.compile(rf"[{_ID_ALPHABET}]{{{RUN_ID_LENGTH}}}")


def new_run_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(RUN_ID_LENGTH))


@dataclass(frozen=True, order=True)
class StepRef:
    run_id: str
    number: int

    def __str__(self) -> str:
        return f"{self.run_id}:{self.number}"


@dataclass(frozen=True, order=True)
class ExecutionRef:
    run_id: str
    step: int
    attempt: int

    @property
    def step_ref(self) -> StepRef:
        return StepRef(self.run_id, self.step)

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step}:{self.attempt}"


def parse_reference(text: str) -> str | StepRef | ExecutionRef:
    """Parse ``RUN``, ``RUN:N`` or ``RUN:N:A``; raise ``InvalidInput`` otherwise."""
    parts = text.strip().upper().split(":") if isinstance(text, str) else []
    try:
        if parts and _RUN_ID.fullmatch(parts[0]):
            if len(parts) == 1:
                return parts[0]
            if len(parts) == 2 and int(parts[1]) >= 1:
                return StepRef(parts[0], int(parts[1]))
            if len(parts) == 3 and int(parts[1]) >= 1 and int(parts[2]) >= 1:
                return ExecutionRef(parts[0], int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    raise InvalidInput(
        f"invalid reference {text!r}: expected a run (e.g. 7K2QF9XH3M), "
        "a step (7K2QF9XH3M:2) or an execution (7K2QF9XH3M:2:1)"
    )


def run_and_step(text: str) -> tuple[str, int | None]:
    """The run and, when given, the step number of ``RUN``, ``RUN:N`` or ``RUN:N:A``."""
    ref = parse_reference(text)
    if isinstance(ref, str):
        return ref, None
    if isinstance(ref, StepRef):
        return ref.run_id, ref.number
    return ref.run_id, ref.step


def parse_execution_ref(text: str) -> ExecutionRef:
    ref = parse_reference(text)
    if not isinstance(ref, ExecutionRef):
        raise InvalidInput(f"invalid execution reference {text!r}: expected RUN:STEP:ATTEMPT")
    return ref


# --- values ------------------------------------------------------------------

#: "json", "pickle", or the format of a typed serialiser ("parquet", "pydantic",
#: "npy", or one registered with ``coflux.serializers.register``).
ValueFormat = str


@dataclass(frozen=True)
class Value:
    """A serialised value as it travels and is stored.

    ``data`` holds the value inline: the JSON structure itself (with
    ``{"$ref": i}`` placeholders for references) or base64 text of pickle
    bytes. When the serialised bytes exceed the blob threshold, ``data`` is
    ``None`` and ``blob`` names them in the blob store. ``references`` lists the
    executions (``"RUN:N:A"``) the value contains, so the server knows the
    dependency graph without reading the value. ``type`` and ``repr`` describe
    non-JSON values for viewers, which never unpickle. A typed value (see
    :mod:`coflux.serializers`) also has ``meta``, what its serialiser needs to
    rebuild it, and ``preview``, plain JSON describing it for viewers.
    """

    format: ValueFormat
    size: int
    data: Any = None
    blob: str | None = None
    references: tuple[str, ...] = ()
    type: str | None = None
    repr: str | None = None
    meta: dict[str, Any] | None = None
    preview: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "size": self.size}
        if self.blob is None:
            out["data"] = self.data
        else:
            out["blob"] = self.blob
        if self.references:
            out["references"] = list(self.references)
        if self.type is not None:
            out["type"] = self.type
        if self.repr is not None:
            out["repr"] = self.repr
        if self.meta is not None:
            out["meta"] = self.meta
        if self.preview is not None:
            out["preview"] = self.preview
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Value:
        return cls(
            format=data["format"],
            size=int(data.get("size", 0)),
            data=data.get("data"),
            blob=data.get("blob"),
            references=tuple(data.get("references") or ()),
            type=data.get("type"),
            repr=data.get("repr"),
            meta=data.get("meta"),
            preview=data.get("preview"),
        )


@dataclass(frozen=True)
class ErrorInfo:
    """An exception as recorded: qualified type name, message, traceback text."""

    type: str
    message: str
    traceback: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(str(data["type"]), str(data["message"]), str(data.get("traceback") or ""))


# --- targets -----------------------------------------------------------------


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
