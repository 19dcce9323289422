"""Serialised values and errors, as they travel and are stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
