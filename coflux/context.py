"""The current execution, as seen from inside a task.

An execution process sets one :class:`Channel` for the execution it runs;
every context function goes through :func:`_channel`, the one guard that says
clearly when it is called outside an execution. Outside Coflux there is no
channel, and decorated functions simply run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, NoReturn, Protocol, TypeVar

from .assets.manifest import PREFIX, Entry, parse_reference
from .errors import ContextError, InvalidInput
from .records.targets import TargetSpec

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")


class Channel(Protocol):
    """What an execution can ask of the agent running it."""

    execution_id: str

    def schedule(
        self, repository: str, spec: TargetSpec, arguments: list[Any]
    ) -> Execution[Any]: ...

    def call(self, repository: str, spec: TargetSpec, arguments: list[Any]) -> Any: ...

    def get_result(self, execution_id: str) -> Any: ...

    def cancel(self, execution_id: str) -> None: ...

    def checkpoint(self, arguments: list[Any]) -> None: ...

    suspense_timeout: float | None

    def log(self, level: str, template: str | None, values: dict[str, Any]) -> None: ...

    def assets(self) -> AssetStore: ...


class AssetStore(Protocol):
    """Where assets are persisted and restored: the execution's agent (which
    shares them through the server), or outside Coflux the workspace's store."""

    def persist(self, path: str | os.PathLike[str] | None, match: str | None) -> Asset: ...

    def entries(self, key: str) -> list[Entry]: ...

    def restore(self, key: str, to: Path, force: bool) -> Path: ...


class Execution(Generic[T]):
    """A handle on an execution: pass it to other tasks, or wait for its result.

    Inside an execution the reference may still be on its way from the server
    (calls are pipelined); reading ``id`` waits for it.
    """

    __slots__ = ("_id", "_resolve")

    def __init__(self, id: str | None = None, resolve: Callable[[], str] | None = None) -> None:
        self._id = id
        self._resolve = resolve

    @property
    def id(self) -> str:
        if self._id is None:
            assert self._resolve is not None
            self._id = self._resolve()
        return self._id

    def result(self) -> T:
        """Block until the execution has finished; return its value or raise its error."""
        return get_result(self.id)

    def cancel(self) -> None:
        """Cancel the execution's step, and everything it called."""
        _channel("Execution.cancel()").cancel(self.id)

    def __repr__(self) -> str:
        return f"Execution({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Execution) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("execution", self.id))


class Asset:
    """A file or directory persisted by an execution, named by its content.

    Pass it to other tasks (its reference travels, not its files) and restore
    it where it is needed: ``asset.restore()``. Identical content has the same
    reference, so a cache key over an asset depends on what is in it.
    """

    __slots__ = ("_entries", "key")

    def __init__(self, ref: str, entries: list[Entry] | None = None) -> None:
        self.key = parse_reference(ref)
        self._entries = entries

    @property
    def ref(self) -> str:
        """``a:<hash>``: what ``coflux assets show/restore`` take."""
        return f"{PREFIX}{self.key}"

    @property
    def entries(self) -> list[Entry]:
        """The files: relative path, permission bits, size, blobs."""
        if self._entries is None:
            self._entries = _asset_store().entries(self.key)
        return self._entries

    @property
    def id(self) -> str:
        """The reference, under Coflux 0.6's name (``asset.id``)."""
        return self.ref

    @property
    def files(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    def restore(self, to: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
        """Write the files into ``to`` (default: the execution's directory); return the
        file's path for an asset of one file, else the directory's."""
        return restore_asset(self, to, force)

    def __repr__(self) -> str:
        return f"Asset({self.ref!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Asset) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("asset", self.key))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Asset, (self.ref,))


def persist_asset(path: str | os.PathLike[str] | None = None, match: str | None = None) -> Asset:
    """Persist a file, a directory (with ``match``, only files matching the glob:
    ``"*.csv"`` matches names at any depth, ``"out/*.csv"`` whole paths), or with
    no path the whole execution directory; return the ``Asset``."""
    return _asset_store().persist(path, match)


def restore_asset(
    asset: Asset | str, to: str | os.PathLike[str] | None = None, force: bool = False
) -> Path:
    """Restore ``asset`` into ``to`` (default: the current directory) and return the
    path: the file's, for an asset persisted from one file; else the directory's.

    Files already there are an error unless ``force``.
    """
    key = asset.key if isinstance(asset, Asset) else parse_reference(asset)
    return _asset_store().restore(key, Path(to) if to is not None else Path.cwd(), force)


class _WorkspaceAssets:
    """Outside Coflux (a REPL, unit tests): assets live in the workspace's local store."""

    def __init__(self) -> None:
        from .cache import BlobStore

        self.store = BlobStore(Path(os.environ.get("COFLUX_CAS") or ".coflux/cas"))

    def persist(self, path: str | os.PathLike[str] | None, match: str | None) -> Asset:
        from .assets import persist

        key, entries, _ = persist(self.store, Path.cwd(), path, match)
        return Asset(key, entries)

    def entries(self, key: str) -> list[Entry]:
        from .assets import decode

        return decode(self.store.get_bytes(key))

    def restore(self, key: str, to: Path, force: bool) -> Path:
        from .assets import decode, restore, restored_path

        data = self.store.get_bytes(key)
        entries = decode(data)
        return restored_path(data, entries, restore(self.store, entries, to, force))


def _asset_store() -> AssetStore:
    return _current.assets() if _current is not None else _WorkspaceAssets()


# One execution at a time per process, shared by the threads a task starts.
_current: Channel | None = None


def set_channel(channel: Channel | None) -> None:
    global _current
    _current = channel


def in_execution() -> bool:
    return _current is not None


def _channel(what: str) -> Channel:
    if _current is None:
        raise ContextError(f"{what} can only be called inside a Coflux execution")
    return _current


def schedule(repository: str, spec: TargetSpec, arguments: list[Any]) -> Execution[Any]:
    return _channel(f"scheduling {spec.name}").schedule(repository, spec, arguments)


def call(repository: str, spec: TargetSpec, arguments: list[Any]) -> Any:
    """Schedule a step and wait for its result, in one round trip."""
    return _channel(f"calling {spec.name}").call(repository, spec, arguments)


def get_result(execution_id: str) -> Any:
    return _channel("Execution.result()").get_result(execution_id)


def execution_id() -> str:
    """The reference of the current execution (``RUN:STEP:ATTEMPT``)."""
    return _channel("coflux.execution_id()").execution_id


def _log(level: str, template: str | None, values: dict[str, Any]) -> None:
    _channel(f"log_{level}").log(level, template, values)


def log_debug(template: str | None = None, **values: Any) -> None:
    """Record a debug message, e.g. ``log_debug("fetched {count} rows", count=n)``."""
    _log("debug", template, values)


def log_info(template: str | None = None, **values: Any) -> None:
    """Record an info message; ``{name}`` in the template is filled from ``values``."""
    _log("info", template, values)


def log_warning(template: str | None = None, **values: Any) -> None:
    """Record a warning message."""
    _log("warning", template, values)


def log_error(template: str | None = None, **values: Any) -> None:
    """Record an error message."""
    _log("error", template, values)


def checkpoint(*arguments: Any) -> None:
    """In a sensor: record its arguments as they are now; when the orchestrator
    restarts the sensor, it starts with these (e.g. a cursor into a feed)."""
    _channel("checkpoint").checkpoint(list(arguments))


class Suspend(BaseException):  # noqa: N818 - a signal to the execution process, not an error
    """Raised to end the execution as ``suspended``; the step starts again later.

    A ``BaseException`` so that a task's own ``except Exception`` doesn't swallow it.
    """

    def __init__(self, until: float | None = None, wait_for: tuple[str, ...] = ()) -> None:
        super().__init__(until, wait_for)
        self.until = until
        self.wait_for = wait_for


def suspend(delay: float | timedelta | datetime | None = None) -> NoReturn:
    """End this execution as ``suspended``; the step runs again from the start when due.

    ``delay`` is seconds, a ``timedelta``, or a ``datetime`` to resume at
    (default: as soon as possible). Calls the execution made are remembered:
    the next attempt gets the same steps back instead of making new ones.
    """
    _channel("suspend")
    if isinstance(delay, datetime):
        until = delay.timestamp()
    elif isinstance(delay, timedelta):
        until = time.time() + delay.total_seconds()
    elif delay is None:
        until = time.time()
    else:
        until = time.time() + float(delay)
    raise Suspend(until=until)


@contextmanager
def suspense(timeout: float | timedelta | None = 0) -> Iterator[None]:
    """Inside the block, a result not ready within ``timeout`` suspends the execution;
    it starts again (from the top) once that result is ready. ``None`` means no
    timeout: results are waited for, as outside any ``suspense`` block.

    ``with cf.suspense(): data = fetch.submit(url).result()``
    """
    channel = _channel("suspense")
    if isinstance(timeout, timedelta):
        seconds: float | None = timeout.total_seconds()
    elif timeout is None:
        seconds = None
    elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise InvalidInput(f"suspense takes seconds, a timedelta or None, not {timeout!r}")
    else:
        seconds = float(timeout)
    previous = channel.suspense_timeout
    channel.suspense_timeout = seconds
    try:
        yield
    finally:
        channel.suspense_timeout = previous
