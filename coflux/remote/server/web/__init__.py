"""The web UI: server-rendered pages (Jinja2) with a little plain JavaScript.

Nothing is fetched from the internet and there is no build step: templates
and static files ship inside the package, so the UI works on an air-gapped
network. ``views`` turns query results into what the templates draw (the
step graph's layout, the timeline, values for people); ``routes/pages.py``
serves the pages.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
