"""Values to bytes and back: JSON when the value is JSON-friendly, then a typed
serialiser chosen by the value's type (:mod:`coflux.serializers`: DataFrames as
Parquet, pydantic models, numpy arrays), cloudpickle otherwise.

A value is *JSON-friendly* when it is built from ``None``, ``bool``, ``int``,
finite ``float``, ``str``, ``list`` and ``dict`` with string keys. Executions
inside a value become explicit references (``{"$ref": i}`` in JSON, a
persistent id in a pickle) so the server sees the dependency graph without
reading the value. Serialised forms larger than the blob threshold are handed
to ``put_blob`` and replaced by their hash.

Only :func:`deserialize` ever unpickles, and only an agent's execution process
calls it; viewers use :func:`display`, which never does (invariant I8).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import pickle
from collections.abc import Callable
from typing import Any

from .context import Asset, Execution
from .errors import SerializationError
from .records.values import ASSET_PREFIX, Value
from .records.values import REF_KEY as _REF_KEY
from .records.values import display as display  # viewers' half, kept importable from here
from .records.values import replace_refs as _replace_refs
from .records.values import shown_reference as _shown_reference

#: Serialised values larger than this (bytes) go to the blob store;
#: ``COFLUX_BLOB_THRESHOLD`` sets it for a process (agents' workers, the CLI).
BLOB_THRESHOLD = int(os.environ.get("COFLUX_BLOB_THRESHOLD") or 200)
#: Longest ``repr`` kept for viewers of non-JSON values.
REPR_LIMIT = 200


class _NotJson(Exception):
    pass


def _to_json(value: Any, references: list[str]) -> Any:
    """The JSON structure of ``value`` with references replaced; raises ``_NotJson``."""
    # Exact types only: a subclass (an enum, a named str) would come back as its base.
    kind = type(value)
    if value is None or kind in (bool, str, int):
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _NotJson
        return value
    if isinstance(value, (Execution, Asset)):
        references.append(_reference(value))
        return {_REF_KEY: len(references) - 1}
    if type(value) is list:
        return [_to_json(item, references) for item in value]
    if type(value) is dict:
        if _REF_KEY in value or not all(isinstance(k, str) for k in value):
            raise _NotJson
        return {key: _to_json(item, references) for key, item in value.items()}
    raise _NotJson


def _make_pickler(buffer: io.BytesIO, references: list[str]) -> pickle.Pickler:
    import cloudpickle  # loaded only when a value needs it

    class Pickler(cloudpickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, (Execution, Asset)):
                references.append(_reference(obj))
                return ("reference", len(references) - 1)
            return None

    return Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)


def _reference(value: Execution[Any] | Asset) -> str:
    """An execution's ``RUN:N:A``, or an asset's ``a:<hash>``."""
    return value.ref if isinstance(value, Asset) else value.id


def _referenced(ref: str) -> Execution[Any] | Asset:
    return Asset(ref) if ref.startswith(ASSET_PREFIX) else Execution(ref)


def type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def safe_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not fail the task
        text = f"<{type_name(value)}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _locate_unpicklable(value: Any, path: str, depth: int = 0) -> str:
    """Find where inside ``value`` pickling fails, as 'path → type'."""
    import cloudpickle

    if depth < 8:
        children: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            children = [(f"{path}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        elif hasattr(value, "__dict__") and isinstance(value.__dict__, dict):
            children = [(f"{path}.{k}", v) for k, v in value.__dict__.items()]
        for child_path, child in children:
            try:
                cloudpickle.dumps(child)
            except Exception:
                return _locate_unpicklable(child, child_path, depth + 1)
    return f"{path} → {type_name(value)}"


def serialize(
    value: Any,
    put_blob: Callable[[bytes], str] | None = None,
    threshold: int = BLOB_THRESHOLD,
    where: str = "value",
) -> Value:
    """Serialise ``value``; raise ``SerializationError`` naming what can't be pickled."""
    references: list[str] = []
    try:
        structure = _to_json(value, references)
    except (_NotJson, RecursionError):
        structure = _NotJson
    if structure is not _NotJson:
        encoded = json.dumps(structure, separators=(",", ":"), ensure_ascii=False).encode()
        meta: dict[str, Any] = {}
        if references:
            meta = {"type": type_name(value), "repr": safe_repr(value)}
        if put_blob is not None and len(encoded) > threshold:
            return Value(
                "json", len(encoded), blob=put_blob(encoded), references=tuple(references), **meta
            )
        return Value("json", len(encoded), data=structure, references=tuple(references), **meta)

    typed = _typed(value, put_blob, threshold)
    if typed is not None:
        return typed
    references = []
    buffer = io.BytesIO()
    try:
        _make_pickler(buffer, references).dump(value)
    except Exception as e:
        location = _locate_unpicklable(value, where)
        raise SerializationError(f"can't serialise {location}: {e}") from None
    data = buffer.getvalue()
    meta = {"type": type_name(value), "repr": safe_repr(value)}
    if put_blob is not None and len(data) > threshold:
        return Value("pickle", len(data), blob=put_blob(data), references=tuple(references), **meta)
    return Value(
        "pickle",
        len(data),
        data=base64.b64encode(data).decode(),
        references=tuple(references),
        **meta,
    )


def _typed(value: Any, put_blob: Callable[[bytes], str] | None, threshold: int) -> Value | None:
    """The value through the first typed serialiser that claims it, with its preview;
    None when none does (or each that does finds it ``Unsuitable``)."""
    from .serializers import Unsuitable, serializers

    for serializer in serializers():
        if not serializer.claims(value):
            continue
        try:
            data, meta = serializer.dump(value)
        except Unsuitable:
            continue
        try:
            preview = serializer.preview(value)
        except Exception:  # a preview is for people: never fail the task over it
            preview = None
        shown: dict[str, Any] = {"type": type_name(value), "repr": safe_repr(value), "meta": meta}
        if put_blob is not None and len(data) > threshold:
            stored: dict[str, Any] = {"blob": put_blob(data)}
        else:
            stored = {"data": base64.b64encode(data).decode()}
        return Value(serializer.format, len(data), preview=preview, **stored, **shown)
    return None


def _raw(value: Value, get_blob: Callable[[str], bytes]) -> Any:
    if value.blob is not None:
        return get_blob(value.blob)
    return value.data


def deserialize(value: Value, get_blob: Callable[[str], bytes]) -> Any:
    """Rebuild a value. Unpickles: call only in an execution of the value's project."""
    raw = _raw(value, get_blob)
    references = [_referenced(ref) for ref in value.references]
    if value.format == "json":
        structure = json.loads(raw) if isinstance(raw, bytes) else raw
        return _replace_refs(structure, lambda i: references[i])
    data = raw if isinstance(raw, bytes) else base64.b64decode(raw)
    if value.format != "pickle":
        from .serializers import for_format

        serializer = for_format(value.format)
        if serializer is None:
            raise SerializationError(
                f"no serialiser for values of format {value.format!r} here "
                "(register it with coflux.serializers.register)"
            )
        return serializer.load(data, value.meta or {})

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            kind, index = pid
            if kind not in ("reference", "execution"):
                raise pickle.UnpicklingError(f"unknown reference kind {kind!r}")
            return references[index]

    return Unpickler(io.BytesIO(data)).load()


def loggable(value: Any) -> Any:
    """A log value as stored: itself when JSON-friendly (an execution or asset in it
    shown as in a result, with its reference), else its type and repr."""
    references: list[str] = []
    try:
        structure = _to_json(value, references)
    except (_NotJson, RecursionError):
        return {"$type": type_name(value), "repr": safe_repr(value)}
    if not references:
        return structure
    return _replace_refs(structure, lambda i: _shown_reference(references[i]))
