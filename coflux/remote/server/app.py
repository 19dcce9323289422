"""The FastAPI application: ``create_app(settings)`` wires routes, errors and lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ...errors import CofluxError
from ...version import __version__
from .orchestration.registry import Projects
from .routes import (
    agents,
    assets,
    blobs,
    environments,
    health,
    manifests,
    pages,
    projects,
    runs,
)
from .settings import Settings

log = logging.getLogger("coflux.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.projects = Projects(settings)
        yield
        await app.state.projects.close()

    app = FastAPI(title="Coflux", version=__version__, lifespan=lifespan)
    app.state.settings = settings

    @app.exception_handler(CofluxError)
    async def coflux_error(request: Request, exc: CofluxError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "code": exc.code}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return JSONResponse({"detail": problems, "code": "invalid"}, status_code=422)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        # Blobs and imported runs (with their logs) are bulk transfers.
        path = request.url.path
        bulk = "/blobs/" in path or path.endswith(("/runs/import", "/assets"))
        limit = settings.max_blob if bulk else settings.max_body
        if length is not None:
            if not length.isdigit():
                return JSONResponse({"detail": "invalid Content-Length"}, status_code=400)
            if int(length) > limit:
                return JSONResponse(
                    {"detail": f"request body over {limit} bytes", "code": "too_large"},
                    status_code=413,
                )
        return await call_next(request)

    for module in (health, projects, environments, manifests, runs, blobs, assets, agents, pages):
        app.include_router(module.router)
    return app
