"""The Jinja2 environment the pages render with, and the filters they share."""

from __future__ import annotations

from fastapi.templating import Jinja2Templates

from . import TEMPLATES, views

templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters["duration"] = views.duration


def filesize(size: float | None) -> str:
    """``1536`` → ``1.5 KB``: a size for people (powers of 1,024)."""
    if size is None:
        return "—"
    if size < 1024:
        return f"{size} B"
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}"
    return f"{size} B"


templates.env.filters["filesize"] = filesize
