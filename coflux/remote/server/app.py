"""The FastAPI application: ``create_app(settings)`` wires routes, errors and lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...errors import CofluxError
from ...version import __version__
from .db import open_database
from .forwarding import Forwarder
from .limits import BodyLimit
from .orchestration.registry import Projects
from .routes import (
    agents,
    asset_pages,
    assets,
    blobs,
    compare,
    docs,
    environments,
    health,
    login,
    manifests,
    pages,
    projects,
    run_parts,
    runs,
    transfers,
)
from .security import Guard, LiveTokens
from .settings import Settings
from .tokens import TokenStore
from .web import STATIC
from .web.errors import error_response, wants_page

log = logging.getLogger("coflux.server")

#: The modules whose ``router`` the app serves (tests walk every route of them).
ROUTES = (
    health,
    projects,
    environments,
    manifests,
    runs,
    transfers,
    blobs,
    assets,
    agents,
    pages,
    login,
    docs,
    run_parts,
    asset_pages,
    compare,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    # Opened now, so a database that can't be reached stops the server before it listens.
    database = open_database(settings.database_url, settings.projects_dir, settings.synchronous)
    tokens = (
        LiveTokens(TokenStore.open(settings.data_dir, settings.database_url))
        if settings.auth
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.projects = Projects(settings, database)
        if tokens is not None:
            tokens.start()
        yield
        if tokens is not None:
            await tokens.stop()
        await app.state.projects.close()

    # /docs and /redoc are served from the package's files (routes/docs.py).
    app = FastAPI(
        title="Coflux", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.database = database
    app.state.tokens = tokens

    # Page URLs answer errors as HTML pages, the API as JSON (web/errors.py).
    @app.exception_handler(CofluxError)
    async def coflux_error(request: Request, exc: CofluxError) -> Response:
        return error_response(request, exc.status_code, exc.code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not wants_page(request):
            return await http_exception_handler(request, exc)
        return error_response(request, exc.status_code, "http", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return error_response(request, 422, "invalid", problems)

    # The catch-all: anything unexpected is still answered as {"detail", "code"}
    # (a page for page URLs), never as a plain-text 500; the traceback goes to
    # the server's log (Starlette logs it after this answer is sent).
    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %r", request.method, request.url.path, exc)
        detail = f"the server failed unexpectedly ({type(exc).__name__}); its log says why"
        return error_response(request, 500, "internal", detail)

    # Innermost: a request for a project another process orchestrates goes there.
    app.add_middleware(Forwarder)
    app.add_middleware(BodyLimit, max_body=settings.max_body, max_blob=settings.max_blob)
    # Added last, so it runs first: nothing reaches a route without passing it.
    app.add_middleware(Guard, settings=settings, tokens=tokens)

    for module in ROUTES:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
