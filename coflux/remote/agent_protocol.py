"""The agent <-> server messages, as typed models: decoded and validated once, where they arrive.

One WebSocket frame holds one JSON message or a JSON array of them (see
``coflux.remote.server.orchestration.agents`` for what each does). Messages
from the agent are requests, tagged by ``method``, with an ``id`` when they
want an answer; messages from the server are answers (``id`` with ``result``
or ``error``) and the server's own requests (``execute``, ``outcome``,
``abort``, ``close``).

A field holding an execution reference (``RUN:N:A``) is named for what it
is, ``execution_ref`` or ``target_ref``, and keeps its wire name
(``execution_id``, ``target_id``: what agents of every version send).

The models are ``msgspec`` structs: decoding a message, validating every
field and encoding it again costs a quarter of pydantic v2's time and less
than the standard library's ``json`` without any validation
(``bench/codec.py``), and this is the hot path (several messages per task).
A strict JSON parser also refuses what the store can't hold (``NaN``,
``1e999999``, lone surrogates): a frame that fails is decoded again slowly,
message by message, so each bad one is answered with an error naming what is
wrong, and the good ones around it are still handled.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ..errors import CofluxError, InvalidInput, from_wire
from .storable import problem

Id = int | str | None
#: Objects passed on as they are (a target's manifest, a value, a log
#: message): each is validated by the record that reads it.
Object = dict[str, Any]


class _Request(msgspec.Struct, tag_field="method", omit_defaults=True, kw_only=True):
    id: Id = None


# --- agent -> server --------------------------------------------------------


class HelloParams(msgspec.Struct):
    session_id: str
    environment: str
    repositories: list[str] = []
    manifests: dict[str, list[Object]] = {}
    concurrency: int = 1
    provides: dict[str, Any] | None = None
    provenance: Object | None = None
    executions: list[str] = []
    batches: bool = False
    outcomes: bool = False


class Hello(_Request, tag="hello"):
    params: HelloParams


class RegisterParams(msgspec.Struct):
    repository: str
    targets: list[Object]
    provenance: Object | None = None


class Register(_Request, tag="register"):
    params: RegisterParams


class NoParams(msgspec.Struct):
    pass


class Drain(_Request, tag="drain"):
    params: NoParams = msgspec.field(default_factory=NoParams)


class ExecutionsParams(msgspec.Struct):
    executions: list[str]


class Abandon(_Request, tag="abandon"):
    params: ExecutionsParams


class HeartbeatParams(msgspec.Struct):
    executions: list[str] | None = None


class Heartbeat(_Request, tag="heartbeat"):
    params: HeartbeatParams = msgspec.field(default_factory=HeartbeatParams)


class CancelParams(msgspec.Struct):
    target_ref: str = msgspec.field(name="target_id")
    execution_ref: str | None = msgspec.field(default=None, name="execution_id")


class Cancel(_Request, tag="cancel"):
    params: CancelParams


class ExecutionParams(msgspec.Struct):
    execution_ref: str = msgspec.field(name="execution_id")


class Started(_Request, tag="started"):
    params: ExecutionParams


class PutResultParams(msgspec.Struct, omit_defaults=True):
    execution_ref: str = msgspec.field(name="execution_id")
    value: Object | None = None
    error: Object | None = None


class PutResult(_Request, tag="put_result"):
    params: PutResultParams


class CheckpointParams(msgspec.Struct):
    execution_ref: str = msgspec.field(name="execution_id")
    arguments: list[Object]


class Checkpoint(_Request, tag="checkpoint"):
    params: CheckpointParams


class SuspendParams(msgspec.Struct):
    execution_ref: str = msgspec.field(name="execution_id")
    until: float | None = None
    wait_for: list[str] = []


class Suspend(_Request, tag="suspend"):
    params: SuspendParams


class PutLogsParams(msgspec.Struct):
    messages: list[Object]


class PutLogs(_Request, tag="put_logs"):
    params: PutLogsParams


class ScheduleParams(msgspec.Struct):
    execution_ref: str = msgspec.field(name="execution_id")
    call_index: int
    repository: str
    target: Object
    arguments: list[Object]
    wait: bool = False


class Schedule(_Request, tag="schedule"):
    params: ScheduleParams


class DependenciesParams(msgspec.Struct):
    dependencies: list[tuple[str, str]]


class Dependencies(_Request, tag="dependencies"):
    params: DependenciesParams


class GetResultParams(msgspec.Struct):
    target_ref: str = msgspec.field(name="target_id")
    execution_ref: str = msgspec.field(name="execution_id")
    timeout: float | None = None


class GetResult(_Request, tag="get_result"):
    params: GetResultParams


AgentRequest = (
    Hello
    | Register
    | Drain
    | Abandon
    | Heartbeat
    | Cancel
    | Started
    | PutResult
    | Checkpoint
    | Suspend
    | PutLogs
    | Schedule
    | Dependencies
    | GetResult
)


class Refused(msgspec.Struct):
    """A message of a frame that failed validation: answered with ``error``."""

    id: Id
    error: CofluxError
    #: The method it named, if it named one (a malformed ``hello`` is told so).
    method: str | None = None


_agent_frame = msgspec.json.Decoder(AgentRequest | list[AgentRequest])


def decode_agent_frame(text: str | bytes) -> list[AgentRequest | Refused]:
    """The messages of one frame from an agent, each validated (or ``Refused``)."""
    try:
        decoded = _agent_frame.decode(text)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_slowly(text)
    return decoded if isinstance(decoded, list) else [decoded]


def _decode_slowly(text: str | bytes) -> list[AgentRequest | Refused]:
    try:
        loose = json.loads(text)
    except ValueError as e:
        return [Refused(None, InvalidInput(f"a frame must be JSON: {e}"))]
    messages: list[AgentRequest | Refused] = []
    for item in loose if isinstance(loose, list) else [loose]:
        id = item.get("id") if isinstance(item, dict) else None
        id = id if isinstance(id, int | str) else None
        method = item.get("method") if isinstance(item, dict) else None
        found = problem(item.get("params")) if isinstance(item, dict) else None
        if not isinstance(item, dict):
            messages.append(Refused(None, InvalidInput("a message must be a JSON object")))
        elif found is not None:
            messages.append(Refused(id, InvalidInput(f"{method}: params.{found}"), method))
        else:
            try:
                messages.append(msgspec.convert(item, AgentRequest))
            except msgspec.ValidationError as e:
                detail = str(e)
                if "Invalid value" in detail and "$.method" in detail:
                    detail = f"unknown method {method!r}"
                error = InvalidInput(f"malformed request: {detail}")
                messages.append(Refused(id, error, method if isinstance(method, str) else None))
    return messages


# --- server -> agent --------------------------------------------------------


class WireError(msgspec.Struct):
    """An error as it crosses: ``code`` names its class (``errors.from_wire``)."""

    message: str
    code: str = "error"

    def to_error(self) -> CofluxError:
        return from_wire(self.message, self.code)


class ExecuteParams(msgspec.Struct, omit_defaults=True):
    execution_id: str
    repository: str
    target: str
    arguments: list[Object]
    timeout: float = 0.0


class OutcomeParams(msgspec.Struct):
    execution_id: str
    target_id: str
    result: Object


class AbortParams(msgspec.Struct):
    execution_id: str


class CloseParams(msgspec.Struct):
    reason: str = ""
    code: int | None = None


class ServerMessage(msgspec.Struct):
    """An answer (``id`` with ``result`` or ``error``), or a request of the
    server's own (``method`` and its ``params``, decoded by ``params_of``)."""

    id: Id = None
    result: Any = msgspec.UNSET
    error: WireError | None = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"{}")

    @property
    def is_answer(self) -> bool:
        return self.method is None and (self.result is not msgspec.UNSET or self.error is not None)


_SERVER_PARAMS: dict[str, type[msgspec.Struct]] = {
    "execute": ExecuteParams,
    "outcome": OutcomeParams,
    "abort": AbortParams,
    "close": CloseParams,
}
_PARAMS_DECODERS = {m: msgspec.json.Decoder(t) for m, t in _SERVER_PARAMS.items()}
_server_frame = msgspec.json.Decoder(ServerMessage | list[ServerMessage])


def decode_server_frame(text: str | bytes) -> list[ServerMessage]:
    """The messages of one frame from the server (``InvalidInput`` if malformed)."""
    try:
        decoded = _server_frame.decode(text)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise InvalidInput(f"malformed message from the server: {e}") from None
    return decoded if isinstance(decoded, list) else [decoded]


def params_of(message: ServerMessage) -> Any:
    """The typed params of a server's request, or None for a method not known here
    (a newer server's: ignored)."""
    decoder = _PARAMS_DECODERS.get(message.method or "")
    if decoder is None:
        return None
    try:
        return decoder.decode(message.params)
    except msgspec.ValidationError as e:
        raise InvalidInput(f"malformed {message.method} from the server: {e}") from None


_encoder = msgspec.json.Encoder()


def encode(message: Any) -> str:
    """A message (a struct, or a dict the orchestrator built) as the frame's text."""
    return _encoder.encode(message).decode()


def answer(id: Id, result: Any) -> dict[str, Any]:
    return {"id": id, "result": result}


def refusal(id: Id, error: CofluxError) -> dict[str, Any]:
    return {"id": id, "error": {"code": error.code, "message": str(error)}}
