"""What every HTTP client of the server shares: the token's header, and the Coflux
error a failed response stands for (decoded by ``errors.from_wire``, as every
receiver of the server's errors decodes them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CofluxError, ServerError, Unauthorized, from_wire

if TYPE_CHECKING:
    import httpx

    from . import plain_http


def error_of(response: httpx.Response | plain_http.Response, path: str) -> CofluxError:
    """The Coflux error a failed response stands for (``errors.from_wire``)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    error = from_wire(body.get("detail") or f"HTTP {status} from {path}", body.get("code"), status)
    if isinstance(error, Unauthorized):
        return Unauthorized(
            "the server needs a valid token: set COFLUX_TOKEN (or `token` in "
            ".coflux.toml) to one made with `coflux tokens create`"
        )
    if isinstance(error, ServerError):
        return ServerError(f"the server failed: {error}")
    return error


def auth_headers(token: str | None) -> dict[str, str]:
    """The header that carries a token (never the URL, which ends up in logs)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
