"""``GET /api/health``: is the server up."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ....version import __version__

router = APIRouter()


@router.get("/api/health")
def health(request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    return {
        "status": "ok",
        "version": __version__,
        "database": request.app.state.database.kind,
        "synchronous": settings.synchronous,
        "auth": settings.auth,
    }
