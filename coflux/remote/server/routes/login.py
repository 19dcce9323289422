"""The web UI's sign-in: a token entered once, kept in an HttpOnly,
SameSite=Strict cookie (only on a server started with ``--auth``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..security import COOKIE
from ..web import TEMPLATES

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES))

#: How long the browser keeps the cookie (seconds); revoking the token ends it sooner.
COOKIE_AGE = 30 * 24 * 3600


def _safe_next(target: str) -> str:
    """Only a path on this server (``//evil.example`` is another host)."""
    return target if target.startswith("/") and not target.startswith("//") else "/projects"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/projects") -> Response:
    context = {"next": _safe_next(next[:2000]), "error": None, "project": None}
    return templates.TemplateResponse(request, "login.html", context)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    body = await request.body()
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/projects"])[0][:2000])
    tokens = request.app.state.tokens
    if tokens is None:  # a server without auth needs no sign-in
        return RedirectResponse(target, status_code=303)
    if await tokens.grant(token) is None:
        context = {"next": target, "error": "That token isn't valid here.", "project": None}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
