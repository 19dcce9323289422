"""Authentication and project isolation (docs/reliability.md, S20 and S21) against a real
server started with ``--auth``, real agents and the real CLI.

Routes are enumerated from the application itself, so a route added later is
walked too: each must refuse a request without a token, and answer a token of
another project exactly as it answers an unknown project.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from conftest import ServerProcess, Workspace, free_port

FLOWS = """
    import coflux as cf

    @cf.task(cache=True)
    def double(x: int) -> int:
        cf.log_info("doubling {x}", x=x)
        return x * 2

    @cf.workflow()
    def main(x: int) -> int:
        return double(x)
"""


def tokens_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    database = ("--database-url", server.database_url) if server.database_url else ()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "coflux",
            "tokens",
            *args,
            "--data-dir",
            str(server.data_dir),
            *database,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def make_token(server: ServerProcess, project: str, name: str) -> str:
    result = tokens_cli(server, "create", "--project", project, "--name", name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("auth") / "data", args=("--auth",)).start()
    yield server
    server.stop()


@pytest.fixture
def authed_workspace() -> Iterator[Any]:
    """Make workspaces on a server with auth (a project each, made with its token);
    their agents are stopped at the end of the test."""
    made: list[Workspace] = []

    def make(server: ServerProcess, root: Path, project: str, token: str) -> Workspace:
        response = httpx.post(
            f"{server.url}/api/projects", json={"name": project}, headers=bearer(token)
        )
        assert response.status_code == 201, response.text
        root.mkdir(parents=True)
        ws = Workspace(root, server.url, project, env={"COFLUX_TOKEN": token})
        ws.write("flows.py", FLOWS)
        made.append(ws)
        return ws

    yield make
    for ws in made:
        ws.stop_agents()


def app_routes() -> list[tuple[str, str, str]]:
    """(kind, method, path) of every route the server serves, and its API docs."""
    from fastapi.routing import APIRoute, APIWebSocketRoute

    from coflux.remote.server.app import ROUTES

    routes = [("http", "GET", "/openapi.json"), ("http", "GET", "/docs")]
    for module in ROUTES:
        for route in module.router.routes:
            if isinstance(route, APIRoute):
                routes += [("http", m, route.path) for m in sorted(route.methods - {"HEAD"})]
            elif isinstance(route, APIWebSocketRoute):
                routes.append(("websocket", "GET", route.path))
    return routes


def fill(path: str, project: str, run: str = "2A1WKWGCCE", blob: str = "0" * 32) -> str:
    values = {"project": project, "run": run, "key": blob, "ref": f"a:{blob}", "path": "x"}
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: values.get(m.group(1), "x"), path)


OPEN = ("/api/health", "/login", "/static")


def test_s21_every_route_needs_a_token(auth_server: ServerProcess) -> None:
    routes = app_routes()
    assert len(routes) > 30  # the walk covers the whole API, not a sample
    with httpx.Client(base_url=auth_server.url, timeout=10) as client:
        for kind, method, path in routes:
            url = fill(path, "p")
            if path.startswith(OPEN):
                continue
            if kind == "websocket":
                with pytest.raises(websockets.InvalidStatus) as refused:
                    asyncio.run(_connect(auth_server.url + url, None))
                assert refused.value.response.status_code == 401, path
                continue
            for headers in ({}, bearer("cfx_not-a-real-token"), {"Cookie": "coflux_token=nope"}):
                response = client.request(method, url, headers=headers, json={})
                if path.startswith("/api/"):
                    assert response.status_code == 401, (method, path, response.text)
                    assert response.json()["code"] == "unauthorized"
                    assert response.headers["www-authenticate"] == "Bearer"
                else:  # pages send the browser to sign in
                    assert response.status_code == 303, (method, path)
                    assert response.headers["location"].startswith("/login?next=%2F")
        assert client.get("/api/health").status_code == 200


async def _connect(url: str, token: str | None) -> Any:
    headers = bearer(token) if token else {}
    async with websockets.connect(url.replace("http", "ws", 1), additional_headers=headers) as ws:
        return await ws.recv()


def test_s21_tokens_are_shown_once_stored_hashed_and_revoked_within_a_second(
    auth_server: ServerProcess, tmp_path: Path, authed_workspace: Any
) -> None:
    token = make_token(auth_server, "revocable", "rev")
    assert token.startswith("cfx_")
    listed = json.loads(tokens_cli(auth_server, "list", "--json").stdout)
    assert {"name": "rev", "project": "revocable", "revoked": False} in [
        {k: t[k] for k in ("name", "project", "revoked")} for t in listed
    ]
    assert token not in tokens_cli(auth_server, "list").stdout
    elsewhere = subprocess.run(
        [sys.executable, "-m", "coflux", "tokens", "list", "--data-dir", str(tmp_path / "no")],
        capture_output=True,
        text=True,
    )
    assert elsewhere.returncode == 2 and not (tmp_path / "no").exists()
    assert elsewhere.stderr.startswith(f"error: no tokens in {tmp_path / 'no'}; is it the server's")
    ws = authed_workspace(auth_server, tmp_path / "ws", "revocable", token)
    agent = ws.start_agent("flows.py")
    assert ws.cli_json("submit", "flows.py", "main", "21", "--wait")["result"] == 42

    # A raw agent connection, to time its closing precisely.
    url = f"{auth_server.url}/api/projects/revocable/agent".replace("http", "ws", 1)

    async def revoke_and_time() -> tuple[int, float]:
        async with websockets.connect(url, additional_headers=bearer(token)) as sock:
            hello = {"session_id": "s21", "environment": "production", "concurrency": 1}
            await sock.send(json.dumps({"id": 0, "method": "hello", "params": hello}))
            await sock.recv()
            revoked = await asyncio.to_thread(tokens_cli, auth_server, "revoke", "rev")
            assert revoked.returncode == 0, revoked.stderr
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(sock.recv(), 5)
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code, time.monotonic() - started

    code, seconds = asyncio.run(revoke_and_time())
    assert code == 4401
    assert seconds < 1.0
    # The real agent is told too, says so in one line and stops.
    assert agent.wait(5) != 0
    assert "the server refused this agent: token revoked" in ws.agent_log()
    response = httpx.get(f"{auth_server.url}/api/projects", headers=bearer(token))
    assert response.status_code == 401
    failed = ws.cli("runs", "list")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        "error: the server needs a valid token: set COFLUX_TOKEN (or `token` in .coflux.toml) "
        "to one made with `coflux tokens create`"
    ]
    # The token is in no file: not the database, not a log, not the workspace.
    haystacks = [auth_server.data_dir, auth_server.log_path, ws.root]
    for place in haystacks:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for file in files:
            assert token.encode() not in file.read_bytes(), file


def test_s21_web_sign_in_sets_a_strict_http_only_cookie(auth_server: ServerProcess) -> None:
    token = make_token(auth_server, "webproject", "web")
    httpx.post(
        f"{auth_server.url}/api/projects", json={"name": "webproject"}, headers=bearer(token)
    ).raise_for_status()
    with httpx.Client(base_url=auth_server.url) as browser:
        page = browser.get("/projects/webproject")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fprojects%2Fwebproject"
        assert 'name="token"' in browser.get(page.headers["location"]).text
        wrong = browser.post("/login", data={"token": "cfx_wrong", "next": "/projects/webproject"})
        assert wrong.status_code == 401 and "isn&#39;t valid" in wrong.text
        signed = browser.post("/login", data={"token": token, "next": "//evil.example/x"})
        assert signed.status_code == 303 and signed.headers["location"] == "/projects"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("coflux_token=cfx_")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert browser.get("/projects/webproject").status_code == 200
        assert browser.get("/projects").text.count('href="/projects/') == 1
        # A cross-site form can't use the cookie to change anything.
        forged = browser.post(
            "/api/projects", json={"name": "webproject"}, headers={"Origin": "http://evil.example"}
        )
        assert forged.status_code == 403


def test_s20_another_projects_resources_answer_as_unknown_ones(
    auth_server: ServerProcess, tmp_path: Path, authed_workspace: Any
) -> None:
    token_a = make_token(auth_server, "alpha", "a")
    token_b = make_token(auth_server, "bravo", "b")
    alpha = authed_workspace(auth_server, tmp_path / "a", "alpha", token_a)
    bravo = authed_workspace(auth_server, tmp_path / "b", "bravo", token_b)
    # A token can't create (or probe for) another project.
    other = httpx.post(
        f"{auth_server.url}/api/projects", json={"name": "bravo"}, headers=bearer(token_a)
    )
    assert other.status_code == 403
    for ws in (alpha, bravo):
        ws.start_agent("flows.py")
    run_b = bravo.cli_json("submit", "flows.py", "main", "5", "--wait")
    assert run_b["result"] == 10
    shared = b"the same bytes in both projects " * 20
    only_b = b"bravo's own bytes " * 20
    from coflux.cache.keys import hash_bytes as blob_key

    for ws, body in ((alpha, shared), (bravo, shared), (bravo, only_b)):
        with ws.client() as client:
            client.put_blob(blob_key(body), body)

    with httpx.Client(base_url=auth_server.url, timeout=10, headers=bearer(token_a)) as client:
        # Every route with a project in its path: B's answers are an unknown project's.
        for kind, method, path in app_routes():
            if "{project}" not in path or kind != "http":
                continue
            # B's real ids, so a route that skipped the project check would show them.
            ids = {"run": run_b["id"], "blob": blob_key(only_b)}
            theirs = client.request(method, fill(path, "bravo", **ids), json={})
            unknown = client.request(method, fill(path, "zulu0", **ids), json={})
            assert theirs.status_code == unknown.status_code, (method, path)
            assert theirs.status_code in (404, 422), (method, path, theirs.text)
            assert theirs.text.replace("bravo", "zulu0") == unknown.text, (method, path)
        # B's ids under A's own path are unknown ids.
        theirs = client.get(f"/api/projects/alpha/runs/{run_b['id']}")
        unknown = client.get("/api/projects/alpha/runs/2A1WKWGCCE")
        assert theirs.status_code == unknown.status_code == 404
        assert client.get(f"/api/projects/alpha/blobs/{blob_key(only_b)}").status_code == 404
        assert client.get(f"/api/projects/alpha/blobs/{blob_key(shared)}").content == shared
        assert client.get(f"/api/projects/alpha/runs/{run_b['id']}/logs").status_code == 404
        assert [p["name"] for p in client.get("/api/projects").json()] == ["alpha"]

    # An agent with A's token can't join B: closed as for an unknown project.
    async def join(project: str) -> tuple[int, str]:
        url = f"{auth_server.url}/api/projects/{project}/agent".replace("http", "ws", 1)
        async with websockets.connect(url, additional_headers=bearer(token_a)) as sock:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(sock.recv(), 5)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code, closed.value.rcvd.reason.replace(project, "@")

    assert asyncio.run(join("bravo")) == asyncio.run(join("zulu0"))
    # B's cached result is not A's: the same task and argument execute in A.
    run_a = alpha.cli_json("submit", "flows.py", "main", "5", "--wait")
    assert run_a["result"] == 10
    shown = alpha.cli_json("runs", "show", run_a["id"])
    assert [(s["state"], s["reused_from"]) for s in shown["steps"]] == [("succeeded", None)] * 2
    assert "doubling 5" in alpha.cli("logs", run_a["id"], check=True).stdout


def test_s21_without_auth_only_loopback_names_and_same_origin_writes(
    server: ServerProcess, tmp_path: Path
) -> None:
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "coflux",
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: refusing to listen on 0.0.0.0 without --auth")
    assert len(refused.stderr.strip().splitlines()) == 1
    with httpx.Client(base_url=server.url) as client:
        for host in ("localhost", "127.0.0.1", f"127.0.0.1:{server.port}", "[::1]:7777"):
            assert client.get("/api/projects", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:7777", "127.0.0.1.evil.example"):
            rebound = client.get("/api/projects", headers={"Host": host})
            assert rebound.status_code == 403, host
            assert rebound.json()["code"] == "forbidden"
        forged = client.post(
            "/api/projects", json={"name": "forged"}, headers={"Origin": "http://evil.example"}
        )
        assert forged.status_code == 403
        assert "forged" not in [p["name"] for p in client.get("/api/projects").json()]
        same = client.post(
            "/api/projects", json={"name": f"same{free_port()}"}, headers={"Origin": server.url}
        )
        assert same.status_code == 201
