"""The execution process: runs targets one at a time for an agent.

An agent starts this module as ``python -m coflux.execution MODULE...`` with a
socket inherited as ``COFLUX_WORKER_FD``. The process imports the modules
once, says ``ready``, then runs each ``execute`` it receives in a fresh
temporary working directory, with stdout and stderr captured (``capture``).
Calls to other targets, waits for results and log messages go to the agent
through the execution's ``channel``, as frames over the socket; a reader
thread (``connection``) routes the agent's responses back to the caller.
This module owns running one target and turning what it did into its outcome.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from .. import context
from ..context import Suspend
from ..errors import CofluxError
from ..records.values import ErrorInfo, Value
from ..serialization import deserialize, type_name
from . import framing, processes
from .capture import Capture
from .channel import Channel
from .connection import Connection
from .truncate import fit_error


def describe_error(exception: BaseException) -> ErrorInfo:
    try:
        message = str(exception)
    except Exception:
        message = "<unprintable>"
    return ErrorInfo(type_name(exception), message, _from_the_user_code(exception))


#: This package's folder: the frames of the runner that called the user's target.
_RUNNER = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _from_the_user_code(exception: BaseException) -> str:
    """The traceback from the user's target down, as pytest shows a test's: the
    runner's own frames above it are noise in a user's log (the frame that
    raised is kept even when it is the runner's)."""
    tb = exception.__traceback__
    while (
        tb is not None
        and tb.tb_next is not None
        and tb.tb_frame.f_code.co_filename.startswith(_RUNNER)
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exception), exception, tb))


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
    out, err = Capture(channel, "stdout"), Capture(channel, "stderr")
    reply: framing.Result
    context.set_channel(channel)
    try:
        os.chdir(directory)
        sys.stdout, sys.stderr = out, err
        target = targets.get(key)
        if target is None:
            raise CofluxError(f"{key[0]}:{key[1]} is not a target of this agent's repositories")
        channel.signature = target.signature
        arguments = [deserialize(Value.from_dict(a), channel.get_blob) for a in message.arguments]
        result = target.fn(*arguments)
        value = channel.serialize(result, "return value")
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
