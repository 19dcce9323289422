"""The execution process's end of the socket to its agent: framed sends, and the
reader thread that routes each frame the agent sends (answers to the waiting
caller, pushed outcomes to ``outcomes``, executions to the main loop)."""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Callable
from queue import Queue
from typing import Any

from ..errors import from_wire
from . import framing, processes


class _Reply:
    """One answer, handed from the reader thread to the caller that waits for it.

    A lock held until the answer arrives: a ``Queue`` per request made a lock
    and three conditions, a sixth of a submit's cost in the execution process
    (a fan-out or cached re-run makes one per step)."""

    __slots__ = ("_arrived", "response")

    def __init__(self) -> None:
        self._arrived = threading.Lock()
        self._arrived.acquire()
        self.response: framing.Response | None = None

    def put(self, response: framing.Response) -> None:
        self.response = response
        self._arrived.release()

    def get(self) -> framing.Response:
        with self._arrived:  # released at once: any later get returns at once too
            pass
        assert self.response is not None
        return self.response


class Connection:
    """The worker's end of the socket: framed sends and a thread that routes replies."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Reply] = {}
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
        reply = self._pending[id] = _Reply()
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
