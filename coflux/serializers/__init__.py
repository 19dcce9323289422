"""Typed values: a serialiser chosen by a value's type, through one small interface.

A :class:`Serializer` says which values it takes (``claims``, by type, without
importing a library the value's type doesn't come from), turns one into bytes
and the metadata needed to rebuild it (``dump``), rebuilds it (``load``), and
describes it for people (``preview``: plain JSON computed where the value is
stored, so the server, the CLI and the pages show it without importing
pandas, pydantic or user code).

Built in, tried in order: pandas DataFrames and Series as Parquet (pyarrow),
pydantic models as their JSON with the model's import path, numpy arrays as
``.npy``. Values none of them claims go on to cloudpickle
(:mod:`coflux.serialization`). ``register`` adds another, e.g. for a team's
own types; every process that reads such values must register it too.
"""

from __future__ import annotations

from typing import Any, Protocol

#: Longest preview kept with a value, as JSON text (bytes); beyond, rows are dropped.
PREVIEW_LIMIT = 8192


class Unsuitable(Exception):  # noqa: N818 - a signal to fall back, not an error
    """Raised by ``dump`` when this value can't be written exactly (a DataFrame with
    non-string column names, a model defined inside a function): the next
    serialiser, finally cloudpickle, takes it."""


class Serializer(Protocol):
    #: The value's ``format`` when this serialiser wrote it ("parquet", "npy", ...).
    format: str

    def claims(self, value: Any) -> bool:
        """Whether this serialiser is for ``value``'s type."""
        ...

    def dump(self, value: Any) -> tuple[bytes, dict[str, Any]]:
        """The bytes, and the metadata (JSON) ``load`` needs; ``Unsuitable`` to pass."""
        ...

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        """The value again, exactly."""
        ...

    def preview(self, value: Any) -> dict[str, Any]:
        """What people see of it: plain JSON, small."""
        ...


_registered: list[Serializer] = []


def register(serializer: Serializer) -> None:
    """Add a serialiser, tried before the built-in ones."""
    _registered.insert(0, serializer)


def _builtin() -> list[Serializer]:
    from .arrays import NumpyArrays
    from .frames import PandasFrames
    from .models import PydanticModels

    return [PandasFrames(), PydanticModels(), NumpyArrays()]


_BUILTIN: list[Serializer] = []


def serializers() -> list[Serializer]:
    if not _BUILTIN:
        _BUILTIN.extend(_builtin())
    return [*_registered, *_BUILTIN]


def for_format(format: str) -> Serializer | None:
    return next((s for s in serializers() if s.format == format), None)


def module_of(value: Any) -> str:
    """The top-level package of ``value``'s type ("pandas", "numpy"...)."""
    return type(value).__module__.partition(".")[0]
