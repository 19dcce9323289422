# ruff: noqa: F811  (the tests take the `browser` fixture imported from test_web)
"""A run page following its run in Chromium: moves patched in place over server-sent
events, and polling behind a proxy that buffers the stream."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import Workspace
from test_web import browser  # noqa: F401  (the fixture, used by name)
from test_web_ui import _shots

LIVE = """
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task()
    def gated(gates: str, i: int) -> int:
        while not (Path(gates) / str(i)).exists():  # the test opens each gate
            time.sleep(0.02)
        cf.log_info("tick {i}", i=i)
        return i

    @cf.workflow()
    def fan(gates: str, n: int) -> int:
        return sum(e.result() for e in [gated.submit(gates, i) for i in range(n)])
"""


class BufferingProxy:
    """A proxy that holds each response back until the server closes it (as some
    reverse proxies do): a stream of server-sent events never arrives."""

    def __init__(self, upstream: str) -> None:
        import asyncio
        import threading

        self.host, self.port = upstream.rsplit("//", 1)[1].split(":")
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(reader, writer) -> None:  # type: ignore[no-untyped-def]
            up_writer = None
            # Every way out closes both sides, a cancellation at close() included
            # (one left mid-request was an unclosed socket at teardown).
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = [
                    line
                    for line in head.split(b"\r\n")
                    if not line.lower().startswith(b"connection:")
                ]
                request = b"\r\n".join(lines[:-2]) + b"\r\nConnection: close\r\n\r\n"
                up_reader, up_writer = await asyncio.open_connection(self.host, int(self.port))
                up_writer.write(request)
                await up_writer.drain()
                response = await up_reader.read()  # all of it: until the server closes
                writer.write(response)
                await writer.drain()
            finally:
                writer.transport.abort()
                if up_writer is not None:
                    up_writer.transport.abort()

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
            ready.set()

        self.thread = threading.Thread(
            target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
            daemon=True,
        )
        self.thread.start()
        ready.wait(10)

    def close(self) -> None:
        import asyncio

        async def stop() -> None:
            self.server.close()
            # Again while any is left: a connection accepted meanwhile starts another.
            while tasks := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()
            await asyncio.sleep(0.2)  # the aborted transports close on the next turns

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _follow_a_fan_out(workspace: Workspace, browser, base: str, tmp_path: Path) -> str:
    gates = tmp_path / "gates"
    gates.mkdir()
    workspace.write("live.py", LIVE)
    workspace.start_agent("live.py", concurrency=12)
    out = workspace.cli("submit", "live.py", "fan", str(gates), "10", check=True).stdout
    run_id = re.search(r"/runs/([A-Z0-9]+)", out).group(1)
    # Wait until all ten tasks exist (the group is drawn whole), then open the page.
    client = workspace.client()
    try:
        for _ in range(500):
            if len(client.get_run(run_id)["steps"]) == 11:
                break
            time.sleep(0.02)
    finally:
        client.close()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/projects/{workspace.project}/runs/{run_id}?env=production")
    group = page.locator("a.node.group")
    assert group.locator("text").nth(0).text_content() == "live:gated × 10"
    (gates / "0").touch()
    page.wait_for_function(
        "document.querySelector('a.node.group').getAttribute('data-summary')"
        ".includes('1 succeeded')",
        timeout=20000,
    )
    page.wait_for_function(
        "[...document.querySelectorAll('.logs .line .text')].some(e => e.textContent === 'tick 0')",
        timeout=20000,
    )
    for i in range(1, 10):
        (gates / str(i)).touch()
    page.wait_for_function(
        "document.querySelector('h1 .state').textContent === 'succeeded'", timeout=30000
    )
    assert page.locator("a.node.group").get_attribute("data-summary") == (
        "Group of 10 calls of live:gated: 10 succeeded"
    )
    texts = page.locator(".logs .line .text").all_text_contents()
    assert sorted(texts) == [f"tick {i}" for i in range(10)]  # each line once
    root = "document.documentElement.getAttribute"
    patches, redraws = page.evaluate(f"[{root}('data-patches'), {root}('data-redraws')]")
    # Moves were patched in; the body was drawn again only at the end (and at
    # most once at the start, for executions made in the second before the page).
    assert int(patches or 0) >= 1 and 1 <= int(redraws or 0) <= 2
    _shots(page, "live")
    return page.evaluate(f"{root}('data-live')")


def test_a_run_page_follows_the_run_by_patching_what_moved(
    workspace: Workspace,
    browser,
    tmp_path: Path,
) -> None:
    how = _follow_a_fan_out(workspace, browser, workspace.server, tmp_path)
    assert how == "ended"  # followed over server-sent events to the end


# The proxy is the test's own: a socket it leaves to the collector at teardown
# says nothing of Coflux, and must not fail the test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_behind_a_proxy_that_buffers_the_page_polls_instead(
    workspace: Workspace,
    browser,
    tmp_path: Path,
) -> None:
    proxy = BufferingProxy(workspace.server)
    try:
        how = _follow_a_fan_out(workspace, browser, proxy.url, tmp_path)
    finally:
        proxy.close()
    assert how == "polling"


def test_the_timeline_moves_with_the_run_without_a_redraw(
    workspace: Workspace, browser, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    workspace.write("live.py", LIVE)
    workspace.start_agent("live.py", concurrency=4)
    out = workspace.cli("submit", "live.py", "fan", str(gates), "2", check=True).stdout
    run_id = re.search(r"/runs/([A-Z0-9]+)", out).group(1)
    # Both tasks running before the page draws the run: no move the page can't patch.
    client = workspace.client()
    try:
        for _ in range(1000):
            steps = client.get_run(run_id)["steps"]
            if len(steps) == 3 and all(s["executions"][-1]["started_at"] for s in steps):
                break
            time.sleep(0.02)
    finally:
        client.close()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{workspace.server}/projects/{workspace.project}/runs/{run_id}?env=production")
    page.wait_for_function("document.documentElement.getAttribute('data-live') === 'events'")
    first, second = (
        page.locator(f'.timeline .row[data-execution="{run_id}:{n}:1"]') for n in (2, 3)
    )
    assert first.locator(".bar").get_attribute("class") == "bar assigned"
    assert first.get_attribute("data-finished") == ""
    page.evaluate("window.marker = 1")
    (gates / "0").touch()
    page.wait_for_function(
        f"document.querySelector('.timeline .row[data-execution=\"{run_id}:2:1\"] .bar')"
        ".getAttribute('class') === 'bar succeeded'",
        timeout=20000,
    )
    root = "document.documentElement.getAttribute"
    assert page.evaluate(f"{root}('data-redraws')") is None  # patched, not drawn again
    assert int(page.evaluate(f"{root}('data-timeline-patches')")) >= 1
    assert page.evaluate("window.marker") == 1  # the same page: no reload
    assert first.get_attribute("data-finished") != ""
    # Its state in words beside the colour (for a screen reader), how long it ran.
    assert re.fullmatch(r"succeeded, (\d+ ms|\d+\.\d\d s)", first.locator(".took").text_content())
    assert second.locator(".bar").get_attribute("class") == "bar assigned"

    def right(row) -> float:  # type: ignore[no-untyped-def]
        style = row.locator(".bar").get_attribute("style")
        left, width = (float(v) for v in re.findall(r"([\d.]+)%", style))
        return left + width

    # The finished bar stops where it finished; the running one reaches now (the right edge).
    assert right(first) < right(second)
    assert abs(right(second) - 100.0) < 0.01
    (gates / "1").touch()
    page.wait_for_function(
        "document.querySelector('h1 .state').textContent === 'succeeded'", timeout=30000
    )
    assert second.locator(".bar").get_attribute("class") == "bar succeeded"
    _shots(page, "live-timeline")
