"""The execution process: runs targets one at a time for an agent.

An agent starts this module as ``python -m coflux.execution MODULE...`` with a
socket inherited as ``COFLUX_WORKER_FD``. The process imports the modules
once, says ``ready``, then runs each ``execute`` it receives in a fresh
temporary working directory, with stdout and stderr captured. Calls to other
targets, waits for results and log messages go to the agent as frames over the
socket; a reader thread routes the agent's responses back to the caller.
"""

from __future__ import annotations

import builtins
import codecs
import importlib
import inspect
import itertools
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from queue import Queue
from typing import Any

from .. import context
from ..assets import Entry, decode, persist, restore, restored_path
from ..context import Execution, Suspend
from ..errors import Abandoned, Cancelled, CofluxError, ExecutionError, RemoteError, from_wire
from ..records.targets import TargetSpec
from ..records.values import ErrorInfo, Value
from ..serialization import deserialize, loggable, serialize, type_name
from . import framing, processes
from .checkpoints import bind_checkpoint
from .submitted import Submitted
from .truncate import fit_error, fit_log

#: Output kept per execution; beyond it lines are counted, not stored (I9).
OUTPUT_LIMIT = 8 * 1024 * 1024
#: Log messages (lines of output included) kept per execution.
MESSAGE_LIMIT = 10_000
#: Bytes of stored blobs handed to the agent for upload at once, while persisting.
UPLOAD_GROUP = 16 * 1024 * 1024
#: The longest line kept whole (longer ones are cut into pieces of this size).
LINE_LIMIT = 64 * 1024


def _utf8_size(text: str) -> int:
    """Bytes ``text`` takes stored (UTF-8): the output budget is bytes, and a line
    of replacement characters is three times its length."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Connection:
    """The worker's end of the socket: framed sends and a thread that routes replies."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Queue[framing.Response]] = {}
        self.executions: Queue[framing.Execute | None] = Queue()
        #: Outcomes of steps the current execution submitted, sent as they end.
        self.outcomes: dict[str, dict[str, Any]] = {}
        threading.Thread(target=self._read, daemon=True, name="coflux-reader").start()

    def send(self, message: framing.FromExecution) -> None:
        data = framing.encode(message)
        with self._send_lock:
            self._sock.sendall(data)

    def send_request(self, method: str, **params: Any) -> Callable[[], dict[str, Any]]:
        """Send a request now; return a function that waits for its answer."""
        id = next(self._ids)
        reply: Queue[framing.Response] = Queue(maxsize=1)
        self._pending[id] = reply
        self.send(framing.Request(id=id, method=method, params=params))
        answer: list[framing.Response] = []

        def wait() -> dict[str, Any]:
            if not answer:
                answer.append(reply.get())
            if answer[0].error is not None:
                raise from_wire(answer[0].error, answer[0].code)
            return answer[0].result

        return wait

    def request(self, method: str, **params: Any) -> dict[str, Any]:
        return self.send_request(method, **params)()

    def _read(self) -> None:
        try:
            while header := self._file.read(framing.HEADER.size):
                (length,) = framing.HEADER.unpack(header)
                message = framing.decode_to_execution(self._file.read(length))
                if isinstance(message, framing.Response):
                    self._pending.pop(message.id).put(message)
                elif isinstance(message, framing.Outcome):
                    self.outcomes[message.target_id] = message.result
                else:
                    self.executions.put(message)
        finally:
            # The agent is gone: nothing more to run, and nothing the task
            # started may run on (a retry may start elsewhere; see ``processes``).
            self.executions.put(None)
            processes.kill_descendants(os.getpid())
            os._exit(0)


class _Capture:
    """Stands in for sys.stdout/sys.stderr during an execution: each line becomes
    a log message. A line longer than ``LINE_LIMIT`` is cut into pieces, so a
    task writing without newlines holds no more than that in memory."""

    def __init__(self, channel: Channel, stream: str) -> None:
        self._channel = channel
        self._stream = stream
        self._partial = ""
        self.encoding = "utf-8"
        self.errors = "replace"
        #: For code that writes bytes (``sys.stdout.buffer.write``): decoded,
        #: with invalid UTF-8 replaced rather than failing the task.
        self.buffer = _BytesCapture(self)

    def write(self, text: str) -> int:
        if self._channel.over_budget():  # counted, not kept: nothing more can be shown
            self._channel.drop(_utf8_size(text))
            return len(text)
        self._partial += text
        if "\n" in self._partial:
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._channel.output(self._stream, line)
        while len(self._partial) > LINE_LIMIT:
            piece, self._partial = self._partial[:LINE_LIMIT], self._partial[LINE_LIMIT:]
            self._channel.output(self._stream, piece)
        return len(text)

    def flush(self) -> None:
        pass

    def close_partial(self) -> None:
        if self._partial:
            self._channel.output(self._stream, self._partial)
            self._partial = ""

    def isatty(self) -> bool:
        return False


class _BytesCapture:
    def __init__(self, text: _Capture) -> None:
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> int:
        self._text.write(self._decoder.decode(bytes(data)))
        return len(data)

    def flush(self) -> None:
        pass


class Channel:
    """The current execution's line to the agent (see ``coflux.context.Channel``)."""

    def __init__(self, connection: Connection, execution_id: str, store: Any) -> None:
        self.execution_id = execution_id
        self._connection = connection
        self._store = store
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

    # values

    def get_blob(self, key: str) -> bytes:
        if not self._store.has(key):
            self._connection.request("fetch_blob", key=key)
        return self._store.get_bytes(key)

    def _serialize(self, value: Any, where: str) -> Value:
        return serialize(value, put_blob=self._store.put_bytes, where=where)

    # context.Channel

    def assets(self) -> _AgentAssets:
        return _AgentAssets(self)

    def _serialize_arguments(self, arguments: list[Any], of: str) -> list[dict[str, Any]]:
        return [
            self._serialize(a, f"argument {i} of {of}").to_dict() for i, a in enumerate(arguments)
        ]

    def _send_schedule(
        self, repository: str, spec: TargetSpec, arguments: list[Any], wait: bool
    ) -> Callable[[], dict[str, Any]]:
        values = self._serialize_arguments(arguments, spec.name)
        return self._connection.send_request(
            "schedule",
            execution_id=self.execution_id,
            call_index=next(self._calls),
            repository=repository,
            target=spec.to_dict(),
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
        pushed = self._connection.outcomes.pop(execution_id, None)
        if pushed is not None:  # sent when it ended: read here, no round trip
            self._connection.send(
                framing.Used(execution_id=self.execution_id, target_id=execution_id)
            )
            return self._outcome(execution_id, pushed)
        result = self._connection.request(
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
            self._serialize(a, f"checkpoint argument {i}").to_dict()
            for i, a in enumerate(arguments)
        ]
        self._connection.request("checkpoint", execution_id=self.execution_id, arguments=values)

    def cancel(self, execution_id: str) -> None:
        self._connection.request("cancel", execution_id=self.execution_id, target_id=execution_id)

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
        size = sum(_utf8_size(part) for part in text) + 1
        if self._within_budget(size):
            self._emit(level, template, shown)

    def output(self, stream: str, line: str) -> None:
        if self._within_budget(_utf8_size(line) + 1):
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
        self._connection.send(
            framing.Log(
                execution_id=self.execution_id,
                sequence=next(self._sequence),
                timestamp=time.time(),
                level=level,
                template=template,
                values=values,
            )
        )


class _Uploads:
    """Blobs of an asset being persisted, sent to the agent in groups of about
    ``UPLOAD_GROUP`` bytes as they are stored, so the upload overlaps storing.
    ``persist_asset`` then waits for those uploads and sends what is left."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._keys: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def add(self, entry: Entry) -> None:  # called from the storing threads
        with self._lock:
            self._keys.extend(entry.blobs)
            self._size += entry.size
            if self._size >= UPLOAD_GROUP:
                self._send()

    def flush(self) -> None:
        with self._lock:
            self._send()

    def _send(self) -> None:
        if self._keys:
            upload = framing.Upload(execution_id=self._channel.execution_id, keys=self._keys)
            self._channel._connection.send(upload)
        self._keys, self._size = [], 0


class _AgentAssets:
    """Assets of an execution: persisted into the machine's store, then shared
    through the server by the agent; restored from the store, which the agent
    fills from the server with what it lacks."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._store = channel._store

    def persist(self, path: str | os.PathLike[str] | None, match: str | None) -> context.Asset:
        # Blobs are handed to the agent for upload while the rest are stored.
        uploads = _Uploads(self._channel)
        key, entries, name = persist(self._store, Path.cwd(), path, match, uploads.add)
        uploads.flush()
        self._channel._connection.request(
            "persist_asset", execution_id=self._channel.execution_id, key=key, path=name
        )
        return context.Asset(key, entries)

    def entries(self, key: str) -> list[Entry]:
        if not self._store.has(key):
            self._channel._connection.request("fetch_asset", key=key)
        return decode(self._store.get_bytes(key))

    def restore(self, key: str, to: Path, force: bool) -> Path:
        # The agent fetches the manifest and whatever blobs the store lacks.
        self._channel._connection.request("fetch_asset", key=key)
        data = self._store.get_bytes(key)
        entries = decode(data)
        return restored_path(data, entries, restore(self._store, entries, to, force))


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


def describe_error(exception: BaseException) -> ErrorInfo:
    try:
        message = str(exception)
    except Exception:
        message = "<unprintable>"
    text = "".join(traceback.format_exception(exception))
    return ErrorInfo(type_name(exception), message, text)


class Workspace:
    """The empty directory each execution starts in, made once per process and
    emptied after each execution (cheaper than a new temporary directory each time)."""

    def __init__(self) -> None:
        self._path: str | None = None

    def take(self) -> str:
        if self._path is None or not os.path.isdir(self._path):
            self._path = tempfile.mkdtemp(prefix="coflux-")
        return self._path

    def clear(self) -> None:
        if self._path is None:
            return
        try:
            with os.scandir(self._path) as entries:
                left = next(entries, None) is not None
        except OSError:  # the task removed or replaced its own directory
            left = True
        if left:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None

    def close(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)


WORKSPACE = Workspace()


def run_execution(
    connection: Connection, message: framing.Execute, targets: dict, store: Any
) -> None:
    execution_id = message.execution_id
    connection.outcomes.clear()  # late ones for the previous execution
    channel = Channel(connection, execution_id, store)
    key = (message.repository, message.target)
    directory = WORKSPACE.take()
    previous = os.getcwd()
    stdout, stderr = sys.stdout, sys.stderr
    out, err = _Capture(channel, "stdout"), _Capture(channel, "stderr")
    reply: framing.Result
    context.set_channel(channel)
    try:
        os.chdir(directory)
        sys.stdout, sys.stderr = out, err
        target = targets.get(key)
        if target is None:
            raise CofluxError(f"{key[0]}:{key[1]} is not a target of this agent's repositories")
        channel.signature = target.signature
        arguments = [
            deserialize(Value.from_dict(a), channel.get_blob) for a in message.arguments
        ]
        result = target.fn(*arguments)
        value = channel._serialize(result, "return value")
        channel.submitted.confirm()
        reply = framing.Result(execution_id=execution_id, value=value.to_dict())
    except Suspend as e:
        channel.submitted.settle()  # the next attempt is given the same steps
        suspended = {"until": e.until, "wait_for": list(e.wait_for)}
        reply = framing.Result(execution_id=execution_id, suspend=suspended)
    except BaseException as e:  # noqa: BLE001 - everything a task raises is its outcome
        if isinstance(e, KeyboardInterrupt):
            raise
        channel.submitted.settle()
        reply = framing.Result(
            execution_id=execution_id, error=fit_error(describe_error(e).to_dict())
        )
    finally:
        out.close_partial()
        err.close_partial()
        channel.finish_output()
        sys.stdout, sys.stderr = stdout, stderr
        context.set_channel(None)
        os.chdir(previous)
        WORKSPACE.clear()
        processes.reap()  # orphans of the task, re-parented here
    connection.send(reply)


def main() -> None:
    from ..cache import BlobStore
    from .loader import load_targets, manifests  # noqa: I001

    processes.become_subreaper()
    sock = socket.socket(fileno=int(os.environ["COFLUX_WORKER_FD"]))
    connection = Connection(sock)
    store = BlobStore(Path(os.environ["COFLUX_CAS"]))
    ready = framing.Ready(pid=os.getpid())
    try:
        targets = load_targets(sys.argv[1:])
        if os.environ.get("COFLUX_WORKER_MANIFESTS"):
            ready.manifests = manifests(sys.argv[1:])
    except CofluxError as e:
        connection.send(framing.Ready(error=str(e)))
        return
    connection.send(ready)
    try:
        while (message := connection.executions.get()) is not None:
            if isinstance(message, framing.Execute):
                run_execution(connection, message, targets, store)
    finally:
        WORKSPACE.close()

