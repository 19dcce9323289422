"""A user's mistake is one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket

import httpx
import pytest
from conftest import Workspace, free_port, one_line_error

FLOWS = """
    import coflux as cf

    @cf.task()
    def shout(text: str) -> str:
        return text.upper()

    @cf.workflow()
    def greet(name: str, punctuation: str = "!") -> str:
        return shout(name) + punctuation
"""


@pytest.fixture
def registered(workspace: Workspace) -> Workspace:
    workspace.write("flows.py", FLOWS)
    workspace.cli("register", "flows.py", check=True)
    return workspace


def test_unknown_module(workspace: Workspace) -> None:
    one_line_error(workspace.cli("register", "nowhere"), "can't find module 'nowhere'")
    one_line_error(workspace.cli("register", "missing.py"), "no such file: missing.py")


def test_module_that_fails_to_import(workspace: Workspace) -> None:
    workspace.write("broken.py", "import coflux as cf\ndef oops(:\n")
    one_line_error(workspace.cli("register", "broken.py"), "importing broken failed: SyntaxError")


def test_unknown_target(registered: Workspace) -> None:
    one_line_error(
        registered.cli("submit", "flows.py", "nope"),
        "unknown target flows:nope in environment 'production'",
        "its workflows: greet",
    )


def test_unregistered_repository(workspace: Workspace) -> None:
    one_line_error(
        workspace.cli("submit", "other.py", "main"),
        "repository 'other' is not registered",
        "coflux register",
    )


def test_tasks_dont_start_runs(registered: Workspace) -> None:
    one_line_error(
        registered.cli("submit", "flows.py", "shout", "x"),
        "flows:shout is a task; only workflows start runs",
    )


def test_arguments_that_dont_fit(registered: Workspace) -> None:
    one_line_error(
        registered.cli("submit", "flows.py", "greet"),
        "flows:greet takes 1 to 2 arguments (name, punctuation); 0 given",
    )
    one_line_error(registered.cli("submit", "flows.py", "greet", "a", "b", "c"), "3 given")


def test_invalid_environment_and_project_names(registered: Workspace) -> None:
    one_line_error(
        registered.cli("runs", "list", "--env", "../etc"), "invalid environment name '../etc'"
    )
    one_line_error(registered.cli("runs", "list", "--project", "a b"), "invalid project name 'a b'")
    one_line_error(
        registered.cli("envs", "create", "bad name"), "invalid environment name 'bad name'"
    )


def test_unknown_environment_and_project(registered: Workspace) -> None:
    one_line_error(
        registered.cli("runs", "list", "--env", "staging"),
        "unknown environment 'staging'",
        "coflux envs create staging",
    )
    one_line_error(
        registered.cli("runs", "list", "--project", "ghost"),
        "unknown project 'ghost'",
        "coflux projects create ghost",
    )


def test_unknown_run_or_step(registered: Workspace) -> None:
    one_line_error(registered.cli("runs", "show", "0000000000"), "unknown run 0000000000")
    one_line_error(registered.cli("runs", "show", "not-a-run"), "invalid reference 'not-a-run'")
    one_line_error(registered.cli("logs", "0000000000:2"), "unknown run 0000000000")
    one_line_error(registered.cli("cancel", "0000000000"), "unknown run 0000000000")


def test_unreachable_server(workspace: Workspace) -> None:
    port = free_port()
    result = workspace.cli("runs", "list", "--server", f"http://127.0.0.1:{port}")
    one_line_error(
        result, f"can't reach the Coflux server at http://127.0.0.1:{port}", "coflux server"
    )
    one_line_error(
        workspace.cli("runs", "list", "--server", "ftp://localhost:7777"), "must be a URL"
    )


def test_no_modules_given(workspace: Workspace) -> None:
    one_line_error(workspace.cli("agent"), "no modules given")


def test_server_port_in_use(workspace: Workspace) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = workspace.cli(
            "server", "--port", str(port), "--data-dir", str(workspace.root / "d"), timeout=20
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"can't listen on 127.0.0.1:{port}" in result.stderr


MALFORMED = [
    ("POST", "/api/projects", b"{not json"),
    ("POST", "/api/projects", b'{"name": "../x"}'),
    ("POST", "/api/projects", b'{"name": null}'),
    ("POST", "/api/projects/{p}/environments", b'{"name": "a/../b"}'),
    ("POST", "/api/projects/{p}/environments", b'{"name": "x", "base": "missing"}'),
    (
        "POST",
        "/api/projects/{p}/manifests",
        b'{"environment": "production", "repository": "a b", "targets": []}',
    ),
    (
        "POST",
        "/api/projects/{p}/manifests",
        b'{"environment": "production", "repository": "m", "targets": [{"x": 1}]}',
    ),
    (
        "POST",
        "/api/projects/{p}/runs",
        b'{"environment": "production", "repository": "m", "target": "t", '
        b'"arguments": [{"format": "yaml"}]}',
    ),
    (
        "POST",
        "/api/projects/{p}/runs",
        b'{"environment": "production", "repository": "m", "target": "t", "arguments": [1e999999]}',
    ),
    ("POST", "/api/projects/{p}/runs", "[" * 100000),
    ("GET", "/api/projects/{p}/runs/..%2F..%2Fetc", b""),
    ("GET", "/api/projects/{p}/runs?environment=%00", b""),
    ("GET", "/api/projects/..%2Fx/environments", b""),
    ("GET", "/api/projects/{p}/blobs/....%2F..%2F..%2F..%2Fetc%2Fpasswd", b""),
    ("GET", "/api/projects/{p}/blobs/abc", b""),
    ("PUT", "/api/projects/{p}/blobs/abc", b"data"),
    ("PUT", "/api/projects/{p}/blobs/" + "0" * 32, b"data that does not match"),
    ("POST", "/api/projects/{p}/runs/0000000000/cancel", b'{"step": -1}'),
    ("POST", "/api/projects/{p}/runs/import", b'{"format": 1}'),
    (
        "POST",
        "/api/projects/{p}/runs/import",
        b'{"format": 1, "run": {"id": "x", "environment": "production", "created_at": 1}, '
        b'"steps": [], "executions": []}',
    ),
    ("GET", "/api/projects/{p}/runs/nope/export", b""),
    # NUL, which PostgreSQL can't store or compare: in a URL, a filter, a key.
    ("GET", "/api/projects/{p}/runs?environment=prod%00uction", b""),
    ("GET", "/projects/{p}?workflow=a%00b", b""),
    (
        "POST",
        "/api/projects/{p}/runs",
        b'{"environment": "production", "repository": "flows", "target": "greet",'
        b' "arguments": [], "idempotency_key": "k\\u0000"}',
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), MALFORMED)
def test_s18_malformed_requests_get_a_4xx_with_a_json_detail(
    workspace: Workspace, method: str, path: str, body
) -> None:
    url = workspace.server + path.replace("{p}", workspace.project)
    response = httpx.request(
        method, url, content=body, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_s17_oversized_json_body_is_refused(workspace: Workspace) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = httpx.post(f"{workspace.server}/api/projects", content=body)
    assert response.status_code == 413
    assert "over 1048576 bytes" in response.json()["detail"]


def test_refused_run_import_leaves_nothing_behind(workspace: Workspace) -> None:
    """A push whose run names a caller this server lacks is refused as a whole."""
    step = {
        "number": 1,
        "parent": "7K2QF9XH3Q:1:1",
        "call_index": 0,
        "repository": "m",
        "target": "t",
        "type": "workflow",
        "arguments": [],
        "options": {},
        "cache_key": None,
        "memo_key": None,
        "code_hash": None,
        "reuse_key": None,
        "created_at": 1.0,
    }
    facts = {
        "format": 1,
        "run": {"id": "7K2QF9XH3M", "environment": "production", "created_at": 1.0},
        "steps": [step],
        "executions": [],
    }
    base = f"{workspace.server}/api/projects/{workspace.project}/runs"
    refused = httpx.post(f"{base}/import", json=facts)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "step 7K2QF9XH3M:1 was called by 7K2QF9XH3Q:1:1, which this server doesn't have; "
        "push that run first"
    )
    assert httpx.get(f"{base}/7K2QF9XH3M/export").status_code == 404
