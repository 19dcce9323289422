"""The agent WebSocket: ``/api/projects/{project}/agent``."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ....errors import CofluxError, StorageFull
from ....records.connection import CLOSE_MOVED
from ... import agent_protocol
from ..deps import ProjectDep, visible_project
from ..orchestration.agents import AgentConnection
from ..refusals import StoreUnavailable

router = APIRouter()
log = logging.getLogger("coflux.server")

#: Close code for a message over the size limit (RFC 6455).
MESSAGE_TOO_BIG = 1009


@router.get("/api/projects/{project}/agents")
def list_agents(project: ProjectDep) -> list[dict[str, Any]]:
    """Agents connected to the project, or recently so."""
    return project.list_agents()


@router.websocket("/api/projects/{project}/agent")
async def agent(websocket: WebSocket, project: str) -> None:
    await websocket.accept()
    try:
        orchestrator = await websocket.app.state.projects.get(project, visible_project(websocket))
    except (StorageFull, StoreUnavailable) as e:
        await websocket.close(code=CLOSE_MOVED, reason=str(e)[:120])  # try again soon
        return
    except CofluxError as e:
        await websocket.close(code=4404, reason=str(e)[:120])
        return
    limit = websocket.app.state.settings.max_body

    async def receive() -> list[agent_protocol.AgentRequest | agent_protocol.Refused] | None:
        """The next frame's messages, decoded and validated here, once."""
        received = await websocket.receive()
        if received["type"] == "websocket.disconnect":
            return None
        # A binary frame is read as its UTF-8 text (what the agent sends is text).
        text = received.get("text") or received.get("bytes") or ""
        if len(text) > limit:
            await websocket.close(code=MESSAGE_TOO_BIG, reason="message too big")
            return None
        return agent_protocol.decode_agent_frame(text)

    async def send(message: Any) -> None:
        await websocket.send_text(agent_protocol.encode(message))

    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason)

    connection = AgentConnection(orchestrator, receive, send, close)
    try:
        await connection.serve()
    except CofluxError as e:
        # A refused write (a full disk) is worth trying again: reconnectable.
        code = CLOSE_MOVED if isinstance(e, (StorageFull, StoreUnavailable)) else 4400
        # The agent may have gone already (S09's flaky links): nothing to close then.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close(code=code, reason=str(e)[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass
