"""A loopback TCP proxy for network faults (docs/reliability.md).

An agent pointed at the proxy instead of the server can be cut off:

- ``drop()``: close both sides of every connection, and refuse new ones
  until ``heal()`` (a cable pulled out);
- ``blackhole()``: keep every socket open but forward nothing, so neither
  side sees an error, only silence (a firewall dropping packets);
- ``heal()``: forward again.

``on_request``, when set, is called with the request line of every HTTP
request a client sends through it (``PUT /path?query HTTP/1.1``) before the
request is forwarded; answering False cuts that connection there (the
request never reaches the target), which is how a test cuts one chosen
transfer.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.on_request: Callable[[str], bool] | None = None
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def drop(self) -> None:
        self.mode = "drop"
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def heal(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self._closed = True
        self.drop()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "drop":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            requests = _Requests()
            for source, sink, watch in ((client, upstream, requests), (upstream, client, None)):
                threading.Thread(target=self._pump, args=(source, sink, watch), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: _Requests | None) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                watching = requests is not None and self.on_request is not None
                if watching and not all(map(self.on_request, requests.feed(data))):
                    break  # cut before the refused request is forwarded
                while self.mode == "blackhole":  # hold it: nothing gets through
                    time.sleep(0.01)
                if self.mode == "drop":
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Requests:
    """The request lines in the bytes one client sends, bodies skipped by their
    Content-Length (a chunked body ends the watching of that connection)."""

    def __init__(self) -> None:
        self._head = b""
        self._body_left = 0
        self._blind = False

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        while data and not self._blind:
            if self._body_left:
                skipped = min(self._body_left, len(data))
                self._body_left -= skipped
                data = data[skipped:]
                continue
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                break
            head, data = self._head[:end].decode("latin-1"), self._head[end + 4 :]
            self._head = b""
            lines.append(head.split("\r\n", 1)[0])
            if re.search(r"(?im)^transfer-encoding:\s*chunked", head):
                self._blind = True
            length = re.search(r"(?im)^content-length:\s*(\d+)", head)
            self._body_left = int(length.group(1)) if length else 0
        return lines
