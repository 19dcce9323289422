"""The server's front door, as plain ASGI: which hosts, origins and tokens get in.

Without ``--auth`` (the default) the server answers only requests addressed to
a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``) or the configured
public host, so a web page elsewhere can't reach it through DNS rebinding
(``--insecure`` without ``--public-host`` turns that check off).
With ``--auth`` every API route, blob transfer, agent connection and page
needs a token (``Authorization: Bearer``, or the web UI's cookie), and the
request is confined to the token's project: the project's routes answer a
token of another project exactly as they answer an unknown project (see
``Projects.get``). In both modes a state-changing request from a foreign
``Origin`` is refused.

Open without a token: ``/api/health``, ``/login`` and ``/static/``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any
from urllib.parse import quote, urlsplit

from .asgi import send_error
from .settings import Settings
from .tokens import REFRESH, Grant, TokenStore, check

log = logging.getLogger("coflux.server")

COOKIE = "coflux_token"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = ("/api/health", "/login", "/static/")
#: Close code for an agent whose token was revoked (4xxx: the agent gives up).
TOKEN_REVOKED = 4401
#: Where the grant of the request's token sits in the ASGI scope.
GRANT = "coflux.grant"


class LiveTokens:
    """The usable tokens, re-read from the store every ``REFRESH`` seconds; holds
    an event per token in use by a WebSocket, set when the token is revoked."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.active: dict[str, Grant] = store.active()
        #: When the read that ``active`` came from began (a token committed
        #: before then is in it).
        self._read_at = time.monotonic()
        self._reading = asyncio.Lock()
        self._revoked: dict[int, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.active = self.store.active()
        self._task = asyncio.create_task(self._refresh())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def grant(self, token: str) -> Grant | None:
        """The grant of ``token``. A token made since the last read is found by
        reading the table again, unless a read began after this request arrived
        (it would have seen the token): rereads go one at a time, so a stream
        of bad tokens costs at most one read in flight, never a false refusal."""
        found = check(token, self.active)
        if found is not None or not token:
            return found
        arrived = time.monotonic()
        async with self._reading:
            if self._read_at <= arrived:
                await self._read()
        return check(token, self.active)

    async def _read(self) -> None:
        started = time.monotonic()
        self.active = await asyncio.to_thread(self.store.active)
        self._read_at = started

    def revocation(self, grant: Grant) -> asyncio.Event:
        return self._revoked.setdefault(grant.token_id, asyncio.Event())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                async with self._reading:
                    await self._read()
            except Exception:
                log.exception("can't read the token table; keeping the last one read")
                continue
            live = {grant.token_id for grant in self.active.values()}
            for token_id, event in list(self._revoked.items()):
                if token_id not in live:
                    event.set()
                    del self._revoked[token_id]


class Guard:
    def __init__(self, app: Any, settings: Settings, tokens: LiveTokens | None) -> None:
        self.app = app
        self.settings = settings
        self.tokens = tokens
        public = settings.public_host.lower() if settings.public_host else None
        self.hosts = LOOPBACK_HOSTS | ({public} if public else set())
        # With tokens, a rebound name gets nowhere without one; --insecure with no
        # public host named serves whatever name clients use.
        self.check_host = tokens is None and (public is not None or not settings.insecure)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.check_host and _hostname(host) not in self.hosts:
            await send_error(
                scope, send, 403, "forbidden", f"this server doesn't answer for {host!r}"
            )
            return
        origin = headers.get("origin")
        unsafe = scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS
        if unsafe and origin and urlsplit(origin).netloc.lower() != host.lower():
            await send_error(scope, send, 403, "forbidden", "cross-origin requests are refused")
            return
        if self.tokens is None or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        grant = await self.tokens.grant(_token(headers))
        if grant is None:
            if scope["type"] == "http" and not scope["path"].startswith("/api/"):
                target = scope["path"] + (
                    "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
                )
                await _redirect(send, "/login?next=" + quote(target, safe=""))
                return
            detail = "a valid token is needed; set COFLUX_TOKEN"
            challenge = ((b"www-authenticate", b"Bearer"),)
            await send_error(scope, send, 401, "unauthorized", detail, challenge)
            return
        scope[GRANT] = grant
        if scope["type"] == "websocket":
            receive = _closing_on(self.tokens.revocation(grant), receive, send)
        await self.app(scope, receive, send)


@functools.lru_cache(maxsize=256)
def _hostname(host: str) -> str | None:
    """The host of a ``Host`` header (``[::1]:7777`` → ``[::1]``), or None if the header
    isn't one (RFC 9110: ``uri-host [":" port]``, nothing more).

    httpx's RFC 3986 parser reads it as a URL's authority; anything a Host
    header can't hold is refused: user information (``127.0.0.1:1@evil.example``
    once passed for 127.0.0.1), a path, a query or a fragment.
    """
    import httpx

    try:
        url = httpx.URL(f"http://{host}/")
    except (httpx.InvalidURL, ValueError):
        return None
    if url.userinfo or url.raw_path != b"/" or url.query or url.fragment or not url.raw_host:
        return None
    # The host as sent (``raw_host``): decoding an A-label could fail ("xn--zz"),
    # and the names allowed are ASCII.
    name = url.raw_host.decode("ascii").lower()
    return f"[{name}]" if ":" in name else name


def _token(headers: dict[str, str]) -> str:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return ""


def _closing_on(revoked: asyncio.Event, receive: Any, send: Any) -> Any:
    """``receive`` for a WebSocket that closes the connection once ``revoked`` is set."""

    async def guarded() -> Any:
        receiving = asyncio.ensure_future(receive())
        waiting = asyncio.ensure_future(revoked.wait())
        done, _ = await asyncio.wait({receiving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if receiving in done:
            waiting.cancel()
            return receiving.result()
        receiving.cancel()
        await send({"type": "websocket.close", "code": TOKEN_REVOKED, "reason": "token revoked"})
        return {"type": "websocket.disconnect", "code": TOKEN_REVOKED}

    return guarded


async def _redirect(send: Any, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})
