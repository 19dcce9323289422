"""Error pages: a page URL (a run, an environment) that fails answers an HTML page a
person can read, with a way back; the API and the run page's live fragment
keep their JSON ``{"detail", "code"}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from . import TEMPLATES

_templates = Jinja2Templates(directory=str(TEMPLATES))
#: Paths that answer machines: everything under them keeps JSON errors.
_MACHINE_PREFIXES = ("/api/", "/static/", "/openapi.json")

_TITLES = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Invalid request",
}


def wants_page(request: Request) -> bool:
    path = request.url.path
    return not path.startswith(_MACHINE_PREFIXES) and not path.endswith("/live")


def error_response(request: Request, status: int, code: str, detail: str) -> Response:
    """The error as a page for page URLs, else as the API's JSON."""
    if not wants_page(request):
        return JSONResponse({"detail": detail, "code": code}, status_code=status)
    context: dict[str, Any] = {
        "status": status,
        "title": _TITLES.get(status, "Error"),
        "detail": detail,
        "project": None,
    }
    return _templates.TemplateResponse(request, "error.html", context, status_code=status)
