"""The frames between an agent and its execution processes, as typed models.

Each frame is a 4-byte big-endian length, then one JSON object tagged by its
``type``. The agent sends ``execute``, ``outcome`` (a submitted step ended)
and ``response`` (the answer to a request); an execution process sends
``ready``, ``log``, ``request``, ``upload``, ``used`` and ``result``. Each
side decodes a frame once, into its model, with ``msgspec`` (the same codec
as the agent's messages to the server, ``coflux.remote.agent_protocol``;
``bench/codec.py`` measures why). An error crosses as its message and
``code``, turned back into its class by ``errors.from_wire``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import msgspec

HEADER = struct.Struct(">I")

Object = dict[str, Any]


class _Frame(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    pass


# --- agent -> execution process -----------------------------------------------


class Execute(_Frame, tag="execute"):
    execution_id: str
    repository: str
    target: str
    arguments: list[Object]
    timeout: float = 0.0


class Outcome(_Frame, tag="outcome"):
    target_id: str
    result: Object


class Response(_Frame, tag="response"):
    id: int
    result: Any = None
    #: The error's message, and its class's ``code``.
    error: str | None = None
    code: str | None = None


ToExecution = Execute | Outcome | Response


# --- execution process -> agent -----------------------------------------------


class Ready(_Frame, tag="ready"):
    pid: int | None = None
    manifests: dict[str, list[Object]] | None = None
    #: Why the repositories couldn't be imported (the process then exits).
    error: str | None = None


class Log(_Frame, tag="log"):
    execution_id: str | None
    sequence: int
    timestamp: float
    level: str
    template: str | None
    values: Object

    def entry(self) -> Object:
        """As the server's ``put_logs`` takes it."""
        return {
            "execution_id": self.execution_id,
            "sequence": self.sequence,
            "timestamp": self.timestamp,
            "level": self.level,
            "template": self.template,
            "values": self.values,
        }


class Request(_Frame, tag="request"):
    id: int
    method: str
    params: Object


class Upload(_Frame, tag="upload"):
    execution_id: str
    keys: list[str]


class Used(_Frame, tag="used"):
    execution_id: str
    target_id: str


class Result(_Frame, tag="result"):
    execution_id: str
    value: Object | None = None
    error: Object | None = None
    suspend: Object | None = None


FromExecution = Ready | Log | Request | Upload | Used | Result

_encoder = msgspec.json.Encoder()
_to_execution = msgspec.json.Decoder(ToExecution)
_from_execution = msgspec.json.Decoder(FromExecution)


def encode(frame: _Frame) -> bytes:
    if isinstance(frame, Log | Request | Result):
        # A task's own data: written by ``json``, which keeps ``NaN`` and a lone
        # surrogate as they are (msgspec would write ``null``, or fail), so that
        # the server refuses them by name (``coflux.remote.storable``), never
        # stores another value.
        data = json.dumps(msgspec.to_builtins(frame), separators=(",", ":")).encode()
    else:
        data = _encoder.encode(frame)
    return HEADER.pack(len(data)) + data


def decode_to_execution(data: bytes) -> ToExecution:
    return _to_execution.decode(data)


def decode_from_execution(data: bytes) -> FromExecution:
    try:
        return _from_execution.decode(data)
    except msgspec.DecodeError:
        # What msgspec refuses and json reads (a lone surrogate's escape): the
        # server refuses it by name, as it would have been refused before.
        return msgspec.convert(json.loads(data), FromExecution)
