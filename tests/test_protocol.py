"""The boundaries' protocols: errors keep their type across each (S60-S63), and
the agent's messages are validated where they arrive."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client
from conftest import ServerProcess, Workspace, new_workspace

from coflux.errors import (
    BlobError,
    CofluxError,
    Conflict,
    InvalidInput,
    NotFound,
    ServerError,
    StorageFull,
    from_wire,
)
from coflux.remote.client import Client


def test_from_wire_decodes_each_code_into_its_class() -> None:
    assert type(from_wire("no such blob", "blob", 404)) is BlobError
    assert type(from_wire("no such run", "not_found", 404)) is NotFound
    assert type(from_wire("exists", "conflict", 409)) is Conflict
    assert type(from_wire("full", "storage_full", 507)) is StorageFull
    assert type(from_wire("bad", "invalid")) is InvalidInput
    assert type(from_wire("database busy", "unavailable", 503)) is ServerError
    assert type(from_wire("bug", "internal", 500)) is ServerError
    # Without a code (an older server, a proxy): by status, else the base class.
    assert type(from_wire("gone", None, 404)) is NotFound
    assert type(from_wire("bad gateway", None, 502)) is ServerError
    assert type(from_wire("who knows", "something_new")) is CofluxError
    assert str(from_wire("no such blob", "blob")) == "no such blob"


def test_s60_an_unexpected_failure_is_a_json_500_and_a_server_error(tmp_path: Path) -> None:
    """A route that really fails (the failpoint raises inside the orchestrator)
    answers ``{"detail", "code"}`` with 500, which the client raises as a
    ``ServerError``; the server goes on serving."""
    server = ServerProcess(tmp_path / "data")
    server.env = {"COFLUX_FAILPOINTS": "submit.before_commit=raise"}
    server.start()
    try:
        ws = new_workspace(server, tmp_path / "ws")
        ws.write(
            "flows.py", "import coflux as cf\n\n@cf.workflow()\ndef noop() -> None:\n    pass\n"
        )
        ws.cli("register", "flows.py", check=True)
        body = {
            "environment": "production",
            "repository": "flows",
            "target": "noop",
            "arguments": [],
            "idempotency_key": "k1",
        }
        response = httpx.post(f"{server.url}/api/projects/{ws.project}/runs", json=body)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "detail": "the server failed unexpectedly (RuntimeError); its log says why",
            "code": "internal",
        }
        with Client(server.url, ws.project) as client, pytest.raises(ServerError) as raised:
            client.submit("production", "flows", "noop", [], idempotency_key="k2")
        assert str(raised.value) == (
            "the server failed: the server failed unexpectedly (RuntimeError); its log says why"
        )
        assert httpx.get(f"{server.url}/api/health").status_code == 200
        assert "failpoint submit.before_commit" in server.log_path.read_text()
    finally:
        server.stop()


FLOWS = """
    import coflux as cf

    @cf.workflow()
    def misuse() -> str:
        try:
            cf.checkpoint()
        except cf.CofluxError as e:
            return f"{type(e).__name__}: {e}"
        return "not refused"
"""


def test_s61_a_refusal_keeps_its_class_from_server_to_task(workspace: Workspace) -> None:
    """The server refuses a workflow's ``checkpoint`` (only sensors have one) with
    ``{"code": "invalid"}`` over the agent's WebSocket; the agent hands the
    code on in its frame, and the task meets the same class, ``InvalidInput``
    (it used to be a bare ``CofluxError`` at the agent)."""
    workspace.write("flows.py", FLOWS)
    ran = workspace.cli_json("run", "flows.py", "misuse")
    assert ran["result"] == ("InvalidInput: checkpoint can only be called by a sensor")


def _hello(**params: object) -> str:
    base = {"session_id": uuid.uuid4().hex, "environment": "production", "concurrency": 1}
    return json.dumps({"id": 0, "method": "hello", "params": {**base, **params}})


def test_s62_malformed_agent_messages_are_refused_one_by_one(workspace: Workspace) -> None:
    """Each message of a frame is validated where it arrives (the WebSocket
    route): a malformed one is answered with an error saying what is wrong,
    the good ones beside it are handled, and the connection stays up."""
    url = workspace.server.replace("http", "ws", 1) + f"/api/projects/{workspace.project}/agent"
    with websockets.sync.client.connect(url) as ws:
        ws.send(_hello())
        assert "result" in json.loads(ws.recv(timeout=10))
        frame = [
            {"id": 1, "method": "heartbeat", "params": {"executions": []}},
            {"id": 2, "method": "launch_rockets", "params": {}},
            {"id": 3, "method": "started", "params": {"execution_id": 42}},
            {"id": 4, "method": "put_result", "params": {}},
            "not an object",
        ]
        ws.send(json.dumps(frame))
        replies: dict[int, object] = {}
        while len(replies) < 4:
            received = json.loads(ws.recv(timeout=10))
            for reply in received if isinstance(received, list) else [received]:
                replies[reply["id"]] = reply.get("result", reply.get("error"))
        assert replies == {
            1: {},
            2: {"code": "invalid", "message": "malformed request: unknown method 'launch_rockets'"},
            3: {
                "code": "invalid",
                "message": "malformed request: Expected `str`, got `int`"
                " - at `$.params.execution_id`",
            },
            4: {
                "code": "invalid",
                "message": "malformed request: Object missing required field `execution_id`"
                " - at `$.params`",
            },
        }
        ws.send("{not json")
        ws.send(json.dumps({"id": 5, "method": "heartbeat", "params": {}}))
        assert json.loads(ws.recv(timeout=10)) == {"id": 5, "result": {}}


def test_s62_a_first_message_that_is_not_a_hello_closes_with_4400(workspace: Workspace) -> None:
    url = workspace.server.replace("http", "ws", 1) + f"/api/projects/{workspace.project}/agent"
    first_messages = {
        '{"id": 0, "method": "heartbeat"}': "the first message must be hello",
        "[]": "the first message must be hello",
        "{not json": "the first message must be hello",
        _hello(concurrency="many"): "malformed hello: malformed request: Expected `int`, got `str`"
        " - at `$.params.concurrency`",
    }
    for first, reason in first_messages.items():
        with websockets.sync.client.connect(url) as ws:
            ws.send(first)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4400, reason)
    with httpx.Client() as client:
        assert client.get(f"{workspace.server}/api/health").status_code == 200
