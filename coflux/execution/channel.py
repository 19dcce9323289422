"""The running execution's line to its agent (``coflux.context.Channel``).

What a target asks while it runs goes through here: calls and submissions of
other targets, their results (answered, pushed, or known from the schedule
reply), checkpoints, cancellation, log messages within the output budget (I9),
and blobs fetched for arguments. ``rebuild_error`` turns another execution's
error back into its exception class where that class can be found.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from ..context import Execution, Suspend
from ..errors import Abandoned, Cancelled, ExecutionError, RemoteError
from ..records.targets import TargetSpec
from ..records.values import ErrorInfo, Value
from ..serialization import deserialize, loggable, serialize
from . import framing
from .asset_uploads import AgentAssets
from .capture import utf8_size
from .checkpoints import bind_checkpoint
from .connection import Connection
from .submitted import Submitted
from .truncate import fit_log

#: Output kept per execution; beyond it lines are counted, not stored (I9).
OUTPUT_LIMIT = 8 * 1024 * 1024
#: Log messages (lines of output included) kept per execution.
MESSAGE_LIMIT = 10_000


class Channel:
    """The current execution's line to the agent (see ``coflux.context.Channel``)."""

    def __init__(self, connection: Connection, execution_id: str, store: Any) -> None:
        self.execution_id = execution_id
        self.connection = connection
        self.store = store
        self._calls = itertools.count(1)
        self._sequence = itertools.count(1)
        self.suspense_timeout: float | None = None
        #: The running target's signature, to bind a sensor's checkpoint to.
        self.signature: inspect.Signature | None = None
        #: Outcomes that arrived with a schedule reply (cache and memo hits).
        self._known: dict[str, dict[str, Any]] = {}
        self._output_bytes = 0
        self._messages = 0
        self._dropped = 0
        self._lock = threading.Lock()
        #: Submissions not yet confirmed: the outcome waits for them.
        self.submitted = Submitted()
        #: Each target's spec as a request carries it, by the spec's identity
        #: (kept alive here, so an id is never reused): a loop of submits sends
        #: the same target each time, and building its dict was a tenth of one.
        self._target_dicts: dict[int, tuple[TargetSpec, dict[str, Any]]] = {}

    # values

    def get_blob(self, key: str) -> bytes:
        if not self.store.has(key):
            self.connection.request("fetch_blob", key=key)
        return self.store.get_bytes(key)

    def serialize(self, value: Any, where: str) -> Value:
        return serialize(value, put_blob=self.store.put_bytes, where=where)

    # context.Channel

    def assets(self) -> AgentAssets:
        return AgentAssets(self)

    def _serialize_arguments(self, arguments: list[Any], of: str) -> list[dict[str, Any]]:
        return [
            self.serialize(a, f"argument {i} of {of}").to_dict() for i, a in enumerate(arguments)
        ]

    def _send_schedule(
        self, repository: str, spec: TargetSpec, arguments: list[Any], wait: bool
    ) -> Callable[[], dict[str, Any]]:
        values = self._serialize_arguments(arguments, spec.name)
        known = self._target_dicts.get(id(spec))
        if known is None:
            known = self._target_dicts[id(spec)] = (spec, spec.to_dict())
        return self.connection.send_request(
            "schedule",
            execution_id=self.execution_id,
            call_index=next(self._calls),
            repository=repository,
            target=known[1],
            arguments=values,
            wait=wait,
        )

    def schedule(self, repository: str, spec: TargetSpec, arguments: list[Any]) -> Execution[Any]:
        # Don't wait for the reference: a loop of submits is pipelined.
        answer = self._send_schedule(repository, spec, arguments, wait=False)
        answer = self.submitted.add(spec.name, answer)

        def resolve() -> str:
            reply = answer()
            if "result" in reply:  # already finished (cached): no round trip for .result()
                self._known[reply["execution_id"]] = reply["result"]
            return reply["execution_id"]

        return Execution(resolve=resolve)

    def call(self, repository: str, spec: TargetSpec, arguments: list[Any]) -> Any:
        answer = self._send_schedule(repository, spec, arguments, wait=True)()
        return self._outcome(answer["execution_id"], answer["result"])

    def get_result(self, execution_id: str) -> Any:
        known = self._known.pop(execution_id, None)
        if known is not None:
            return self._outcome(execution_id, known)
        pushed = self.connection.outcomes.pop(execution_id, None)
        if pushed is not None:  # sent when it ended: read here, no round trip
            self.connection.send(
                framing.Used(execution_id=self.execution_id, target_id=execution_id)
            )
            return self._outcome(execution_id, pushed)
        result = self.connection.request(
            "get_result",
            execution_id=self.execution_id,
            target_id=execution_id,
            timeout=self.suspense_timeout,
        )
        if result.get("state") == "pending":  # not ready within the suspense timeout
            raise Suspend(wait_for=(execution_id,))
        return self._outcome(execution_id, result)

    def checkpoint(self, arguments: list[Any]) -> None:
        if self.signature is not None:
            arguments = bind_checkpoint(self.signature, arguments)
        values = [
            self.serialize(a, f"checkpoint argument {i}").to_dict() for i, a in enumerate(arguments)
        ]
        self.connection.request("checkpoint", execution_id=self.execution_id, arguments=values)

    def cancel(self, execution_id: str) -> None:
        self.connection.request("cancel", execution_id=self.execution_id, target_id=execution_id)

    def _outcome(self, execution_id: str, result: dict[str, Any]) -> Any:
        state = result["state"]
        if state in ("succeeded", "cached"):
            return deserialize(Value.from_dict(result["value"]), self.get_blob)
        if state == "cancelled":
            raise Cancelled(f"execution {execution_id} was cancelled", execution_id)
        if state == "abandoned":
            raise Abandoned(
                f"execution {execution_id} was abandoned: its agent was lost", execution_id
            )
        if "error" in result:
            raise rebuild_error(ErrorInfo.from_dict(result["error"]), execution_id)
        raise ExecutionError(f"execution {execution_id} ended as {state}", execution_id)

    def log(self, level: str, template: str | None, values: dict[str, Any]) -> None:
        shown = {k: loggable(v) for k, v in values.items()}
        if not self.over_budget():  # one that is kept: cut to what a message carries
            template, shown = fit_log(template, shown)
        text = [template or "", *(f"{k}{v}" for k, v in shown.items())]
        size = sum(utf8_size(part) for part in text) + 1
        if self._within_budget(size):
            self._emit(level, template, shown)

    def output(self, stream: str, line: str) -> None:
        if self._within_budget(utf8_size(line) + 1):
            self._emit(stream, line, {})

    def over_budget(self) -> bool:
        return self._output_bytes > OUTPUT_LIMIT or self._messages > MESSAGE_LIMIT

    def drop(self, size: int) -> None:
        with self._lock:
            self._dropped += size

    def _within_budget(self, size: int) -> bool:
        """I9: an execution's output and log messages share ``OUTPUT_LIMIT`` bytes
        and ``MESSAGE_LIMIT`` messages; beyond, they are counted, dropped, and
        reported by one last line."""
        with self._lock:
            self._output_bytes += size
            self._messages += 1
            if self._output_bytes > OUTPUT_LIMIT or self._messages > MESSAGE_LIMIT:
                self._dropped += size
                return False
        return True

    def finish_output(self) -> None:
        if self._dropped:
            self._emit("stderr", f"[coflux: {self._dropped} bytes of output truncated]", {})

    def _emit(self, level: str, template: str | None, values: dict[str, Any]) -> None:
        self.connection.send(
            framing.Log(
                execution_id=self.execution_id,
                sequence=next(self._sequence),
                timestamp=time.time(),
                level=level,
                template=template,
                values=values,
            )
        )


def rebuild_error(error: ErrorInfo, execution_id: str) -> BaseException:
    """The original exception class when it can be found here, else a ``RemoteError``.

    The instance is made without calling ``__init__`` (whose signature we don't
    know); the remote traceback is attached as a note.
    """
    module_name, _, name = error.type.rpartition(".")
    cls: Any = None
    try:
        if not module_name:
            cls = getattr(builtins, name, None)
        else:
            cls = getattr(importlib.import_module(module_name), name, None)
    except Exception:
        cls = None
    if isinstance(cls, type) and issubclass(cls, Exception) and cls is not RemoteError:
        try:
            exception = cls.__new__(cls, error.message)
            exception.args = (error.message,)
            exception.add_note(f"Raised in execution {execution_id}:\n{error.traceback}")
            return exception
        except Exception:
            pass
    return RemoteError(error.type, error.message, error.traceback, execution_id)
