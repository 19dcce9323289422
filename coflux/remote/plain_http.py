"""GET requests over plain HTTP with the standard library: the CLI's reads, without httpx.

Importing httpx (and the httpcore, h11, anyio, ssl and certifi it imports)
is some three bare Python starts, the largest part of a cold read command
(``runs list``, ``runs show``, ``status``, ``logs``) once the rest was cut;
``http.client`` is a third of that (issue 25, ``bench/cold_reads.py``).
``coflux.remote.client.Client`` sends its GETs to an ``http://`` server
here and everything else (writes, streams, HTTPS, blob stores' presigned
URLs) through httpx, as before.

A GET here is what httpx would send: the client's base path joined with the
request's and percent-encoded, query parameters encoded as httpx encodes them (``True`` as
``true``, ``None`` as empty), the client's headers, the response read whole.
One connection is kept alive across the process's requests; a kept
connection the server has closed meanwhile is opened again once (a GET is
safe to resend). A failure is raised as the httpx exception of the same name
would be (``ConnectError``, ``ReadTimeout``...), so the client words it the
same way; ``NotSent`` ones never reached the server.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]

#: What httpx leaves as it is in a path (WHATWG's path percent-encode set,
#: inverted; ``%`` kept, so an escape already made stays one).
_PATH_SAFE = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>?`{}')


class TransportError(Exception):
    """A request that failed on the way; the class is named as httpx's would be."""


class NotSent(TransportError):
    """The server was never reached: safe to send to another server."""


class ConnectError(NotSent):
    pass


class ConnectTimeout(NotSent):
    pass


class ReadTimeout(TransportError):
    pass


class ReadError(TransportError):
    pass


class RemoteProtocolError(TransportError):
    pass


class Response:
    """What the client reads of an httpx response: the status, headers and body."""

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers  # names in lower case
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _query_value(value: Any) -> str:
    # httpx's encoding of primitive values (``primitive_value_to_str``).
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def handles(base_url: str) -> bool:
    """Whether requests to ``base_url`` can be sent here: plain HTTP to a host."""
    parts = urlsplit(base_url)
    return parts.scheme == "http" and bool(parts.hostname) and not parts.query


class PlainHttp:
    """GETs to one ``http://`` server (``handles(base_url)``), over one kept connection."""

    def __init__(self, base_url: str, timeout: float, headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or ""
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc.rsplit("@", 1)[-1]
        self.timeout = timeout
        self._headers = {"Host": self._host_header, "Accept": "*/*", **headers}
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def get(
        self, path: str, params: Params | None = None, timeout: float | None = None
    ) -> Response:
        target = quote(self._prefix + path, safe=_PATH_SAFE)
        if params:
            pairs = params.items() if isinstance(params, Mapping) else params
            # As httpx encodes them: urlencode's (a space as "+").
            target += "?" + urlencode([(k, _query_value(v)) for k, v in pairs])
        reused = self._connection is not None
        try:
            return self._send(target, self.timeout if timeout is None else timeout)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise RemoteProtocolError("the server disconnected without a response") from None
        # The kept connection was closed by the server between requests: once more, afresh.
        try:
            return self._send(target, self.timeout if timeout is None else timeout)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            raise RemoteProtocolError("the server disconnected without a response") from None

    def _send(self, target: str, timeout: float) -> Response:
        connection = self._connection
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            try:
                connection.connect()
            except TimeoutError as e:
                raise ConnectTimeout(str(e)) from None
            except OSError as e:
                raise ConnectError(str(e)) from None
            # Small requests, answered at once: no Nagle delay (as httpcore sets it).
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection = connection
        else:
            connection.sock.settimeout(timeout)
        try:
            # skip_host/skip_accept_encoding: the headers above are the whole request's.
            connection.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
            for name, value in self._headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            content = response.read()
        except TimeoutError as e:
            self.close()
            raise ReadTimeout(str(e)) from None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            raise
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise ReadError(str(e) or type(e).__name__) from None
        headers = {name.lower(): value for name, value in response.getheaders()}
        if response.will_close:
            self.close()
        return Response(response.status, headers, content)
