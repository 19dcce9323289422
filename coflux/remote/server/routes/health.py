"""``GET /api/health``: is the server up."""

from __future__ import annotations

from fastapi import APIRouter

from ....version import __version__

router = APIRouter()


@router.get("/api/health")
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}
