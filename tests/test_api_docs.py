"""`/docs` and `/redoc` work with no network, and page URLs answer errors as HTML.

In Debian's Chromium (Playwright) with every request beyond the server
refused, as on an air-gapped network; and over plain HTTP. Browser tests are
skipped, saying why, where Chromium or Playwright isn't installed.
"""

from __future__ import annotations

import re

import httpx
from conftest import ServerProcess, Workspace
from test_web import browser  # noqa: F401  (the fixture)

from coflux.version import __version__


def _offline_page(chromium, server: ServerProcess):  # type: ignore[no-untyped-def]
    """A page whose requests anywhere but the server fail; returns it and what was refused."""
    page = chromium.new_page()
    refused: list[str] = []

    def route(r) -> None:  # type: ignore[no-untyped-def]
        if r.request.url.startswith(server.url):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return page, refused


def test_swagger_ui_and_redoc_render_with_no_network(
    server: ServerProcess,
    browser,  # noqa: F811
) -> None:
    page, refused = _offline_page(browser, server)
    page.goto(f"{server.url}/docs")
    # Rendered by the shipped Swagger UI: the title and the operations of the schema.
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("Coflux")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/health" in paths
    page.goto(f"{server.url}/redoc")
    page.wait_for_selector("h1", timeout=20_000)
    assert page.locator("h1").first.inner_text() == f"Coflux ({__version__})"
    page.get_by_text("/api/health").first.wait_for(timeout=20_000)
    assert refused == []


def test_docs_pages_load_only_the_packages_files(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        for path in ("/docs", "/redoc"):
            html = client.get(path).text
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
            assert urls, html
            for url in urls:
                assert url.startswith("/"), f"{path} loads {url} from elsewhere"
                if url.startswith("/static/"):
                    assert client.get(url).status_code == 200, url


def test_a_page_url_of_an_unknown_run_answers_an_html_page(workspace: Workspace) -> None:
    base = f"{workspace.server}/projects/{workspace.project}"
    with httpx.Client() as client:
        page = client.get(f"{base}/runs/0000000000")
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "404 · Not found" in page.text and "unknown run 0000000000" in page.text
        unknown = client.get(f"{workspace.server}/projects/no-such-project")
        assert (unknown.status_code, unknown.headers["content-type"][:9]) == (404, "text/html")
        nowhere = client.get(f"{workspace.server}/no/such/page")
        assert (nowhere.status_code, nowhere.headers["content-type"][:9]) == (404, "text/html")
        # The API, and the live fragment the run page polls, keep their JSON.
        api = client.get(f"{workspace.server}/api/projects/{workspace.project}/runs/0000000000")
        assert (api.status_code, api.json()["code"]) == (404, "not_found")
        live = client.get(f"{base}/runs/0000000000/live")
        assert (live.status_code, live.json()["code"]) == (404, "not_found")
        assert client.get(f"{workspace.server}/api/nowhere").json() == {"detail": "Not Found"}
