"""Serialised values and errors, as they travel and are stored, and as viewers see them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: How an asset is written among a value's references: ``a:<hash>``.
ASSET_PREFIX = "a:"
#: The placeholder of a reference inside a JSON value: ``{"$ref": i}``.
REF_KEY = "$ref"

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


def blob_keys_in(facts: Any) -> set[str]:
    """The blob keys of every serialised value inside a run's facts or a queued operation."""
    found: set[str] = set()
    stack = [facts]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("blob"), str) and "format" in item:
                found.add(item["blob"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def replace_refs(structure: Any, resolve: Callable[[int], Any]) -> Any:
    """``structure`` with each ``{"$ref": i}`` placeholder replaced by ``resolve(i)``."""
    if isinstance(structure, list):
        return [replace_refs(item, resolve) for item in structure]
    if isinstance(structure, dict):
        if len(structure) == 1 and REF_KEY in structure:
            return resolve(structure[REF_KEY])
        return {key: replace_refs(item, resolve) for key, item in structure.items()}
    return structure


def display(value: Value, get_blob: Callable[[str], bytes] | None = None) -> Any:
    """A JSON-able view of a value for people and scripts; never unpickles.

    A JSON value appears as itself (references inside it as
    ``{"$type": "coflux.Execution", "repr": ..., "id": ...}``); any other value
    as ``{"$type": ..., "repr": ...}``, and a typed one (a DataFrame, a model,
    an array) with its ``"preview"`` too, as computed when it was stored.
    (Here, not in ``coflux.serialization``, so that viewers such as ``coflux
    runs show`` don't import the SDK's execution context to show a value.)
    """
    if value.format == "json" and not (value.blob is not None and get_blob is None):
        raw = (
            get_blob(value.blob) if get_blob is not None and value.blob is not None else value.data
        )
        structure = json.loads(raw) if isinstance(raw, bytes) else raw

        return replace_refs(structure, lambda i: shown_reference(value.references[i]))
    shown: dict[str, Any] = {"$type": value.type or value.format, "repr": value.repr}
    if value.repr is None:
        shown["repr"] = f"<{value.format} value, {value.size} bytes>"
    if value.preview is not None:
        shown["preview"] = value.preview
    return shown


def shown_reference(ref: str) -> dict[str, str]:
    """How viewers see an execution or an asset inside a value: it keeps its identity."""
    if ref.startswith(ASSET_PREFIX):
        return {"$type": "coflux.Asset", "repr": f"Asset({ref!r})", "ref": ref}
    return {"$type": "coflux.Execution", "repr": f"Execution({ref!r})", "id": ref}
