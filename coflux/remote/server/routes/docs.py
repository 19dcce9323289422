"""``/docs`` (Swagger UI) and ``/redoc``: the API's documentation, from files shipped in
the package (``web/static/apidocs``), so they work with no network.

FastAPI's own pages load their scripts, styles and fonts from CDNs: on an
air-gapped network they were blank.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

_ASSETS = "/static/apidocs"
#: The browser may load nothing from elsewhere: ReDoc's bundle shows a logo from
#: cdn.redoc.ly, which this refuses without a request (the logo then hides itself).
_ONLY_THIS_SERVER = (
    "default-src 'self'; img-src 'self' data:; font-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; connect-src 'self'"
)


def _local(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = _ONLY_THIS_SERVER
    return page


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return _local(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Coflux API",
            swagger_js_url=f"{_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_ASSETS}/favicon-32x32.png",
            # No badge from validator.swagger.io, which would be a request out.
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return _local(
        get_redoc_html(
            openapi_url="/openapi.json",
            title="Coflux API",
            redoc_js_url=f"{_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{_ASSETS}/favicon-32x32.png",
            with_google_fonts=False,
        )
    )
