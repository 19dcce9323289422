"""An agent's requests to the server: numbered, batched per loop pass, pending until answered.

Each request gets an id and stays in ``pending`` until the server answers it;
what a pass of the event loop produced is sent together, as one frame (a JSON
array) and one write. A request made while disconnected waits in ``pending``,
and a new connection sends every unanswered one again (``resend``); the server
recognises repeats. A message too large for the connection never leaves
(``oversize``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

import websockets

from ..records.connection import MAX_MESSAGE_BYTES
from ..remote import agent_protocol as protocol
from . import oversize
from .agent_logs import FRAME_BYTES
from .blob_transfers import group as _group

log = logging.getLogger("coflux.agent")


class Requests:
    def __init__(self, spawn: Callable[[Any], None]) -> None:
        self._spawn = spawn
        self._ids = itertools.count(1)
        self.pending: dict[int, tuple[dict[str, Any], asyncio.Future[Any]]] = {}
        self._outgoing: list[dict[str, Any]] = []
        #: No message larger than this is sent (see ``oversize``).
        self.message_limit = MAX_MESSAGE_BYTES
        #: The open WebSocket, and whether its session is set up (the agent's
        #: connection loop sets both).
        self.socket: Any = None
        self.connected = asyncio.Event()

    def request(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        """Send a request; it stays pending (and is re-sent) until the server answers."""
        id = next(self._ids)
        message = {"id": id, "method": method, "params": params}
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[id] = (message, future)
        if self.socket is not None and self.connected.is_set():
            self._send_soon(message)
        return future

    def fire(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        """A request nobody awaits: a refusal (say, a late result for a cancelled
        execution) is logged rather than lost as an unretrieved exception."""

        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.warning("%s refused: %s", method, future.exception())

        future = self.request(method, params)
        future.add_done_callback(done)
        return future

    def answer(self, message: protocol.ServerMessage) -> None:
        """The server's answer to one of our requests: settle its future."""
        entry = self.pending.pop(message.id, None)  # type: ignore[arg-type]
        if entry is not None and not entry[1].done():
            if message.error is not None:
                entry[1].set_exception(message.error.to_error())
            else:
                entry[1].set_result(message.result)

    def unreported(self) -> set[str]:
        """Executions whose outcome (a result or a suspension) is not yet acknowledged."""
        return {
            m["params"]["execution_id"]
            for m, _ in self.pending.values()
            if m["method"] in ("put_result", "suspend")
        }

    async def resend(self, ws: Any) -> None:
        """Send again what the previous connection never answered."""
        for unanswered, _ in list(self.pending.values()):
            text = self.encode(unanswered)
            if text is not None:
                await ws.send(text)

    def _send_soon(self, message: dict[str, Any]) -> None:
        """Send at the end of this pass of the event loop, together with whatever
        else is sent in it (one frame and one write for a burst of requests)."""
        self._outgoing.append(message)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._send_outgoing)

    def _send_outgoing(self) -> None:
        batch, self._outgoing = self._outgoing, []
        # Unsent requests stay in ``pending``: a new connection re-sends them.
        if batch and self.socket is not None and self.connected.is_set():
            encoded = [text for text in map(self.encode, batch) if text is not None]
            for frame in _frames(encoded):
                self._spawn(send_text(self.socket, frame))

    def encode(self, message: dict[str, Any]) -> str | None:
        """The message as sent, or None when it is too large to send (``oversize``)."""
        return oversize.encode(message, self.message_limit, self.pending)


async def send_text(ws: Any, text: str) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(text)


def _frames(encoded: list[str]) -> list[str]:
    """Encoded messages joined into frames (JSON arrays) of about ``FRAME_BYTES``,
    well under the server's message limit; a larger message travels alone."""
    return [
        group[0] if len(group) == 1 else "[" + ",".join(group) + "]"
        for group in _group(encoded, lambda text: len(text) + 1, FRAME_BYTES, most=10_000)
    ]
