"""Agent sessions: who is connected, who is silent, and what each runs.

A session outlives its connection for the agent timeout, so an agent that
reconnects keeps its executions. An execution whose agent is lost is
abandoned if it had started (the state machine may retry it), or queued
again if it never had (I4). Dispatch itself is ``dispatch.Dispatcher``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ....records.connection import CLOSE_REPLACED, CLOSE_TIMED_OUT
from ....records.placement import Tags
from ..settings import Settings
from ..tables import T_EXECUTION
from .batch import Batch
from .clock import Clock
from .dispatch import Dispatcher
from .environments import Environments
from .index import LiveIndex
from .machine import ExecutionMachine
from .state import LiveExecution, Send, Session

log = logging.getLogger("coflux.server")


def _close(code: int, reason: str) -> dict[str, Any]:
    """The message that makes an agent's connection close (see ``AgentConnection``)."""
    return {"method": "close", "params": {"reason": reason, "code": code}}


class AgentSessions:
    def __init__(
        self,
        index: LiveIndex,
        batch: Batch,
        settings: Settings,
        clock: Clock,
        environments: Environments,
        dispatcher: Dispatcher,
        machine: ExecutionMachine,
    ) -> None:
        self.index = index
        self.batch = batch
        self.settings = settings
        self.clock = clock
        self.environments = environments
        self.dispatcher = dispatcher
        self.machine = machine

    def connect(
        self,
        session_id: str,
        environment: str,
        repositories: set[str],
        concurrency: int,
        send: Send,
        executions: list[str],
        provides: Tags | None = None,
    ) -> Session:
        """An agent (re)connects; executions it no longer has are abandoned."""
        environment_id = self.environments.id(environment)
        now = self.clock.monotonic()
        session = self.index.sessions.get(session_id)
        if session is not None and session.send is not None and session.send != send:
            # The same agent again while its old connection looks open (a network
            # cut the server has not noticed): the old one is closed, and what
            # the agent still runs stays with it (its hello lists them).
            session.send(_close(CLOSE_REPLACED, "replaced by a newer connection of this session"))
        if session is None or session.environment_id != environment_id:
            if session is not None:
                self._expire(session)
            session = Session(session_id, environment_id, repositories, concurrency, send, now)
            self.index.sessions[session_id] = session
        else:
            session.repositories, session.concurrency = repositories, concurrency
            session.send, session.last_seen = send, now
        session.provides = dict(provides or {})
        still_running = set(executions)
        for id in list(session.executions):
            execution = self.index.live.get(id)
            if execution is not None and execution.ref not in still_running:
                self._lost(execution)
        self.dispatcher.request()
        return session

    def abandon(self, session: Session, refs: list[str]) -> None:
        """Executions of this session its agent says it killed (see ``_lost``)."""
        for ref in refs:
            execution = self.index.live_by_ref(ref)
            if execution is not None and execution.session_id == session.id:
                log.info("agent %s gave up %s", session.id, ref)
                self._lost(execution)

    def close_sessions(self, code: int, reason: str) -> None:
        """Close every agent's connection (they reconnect)."""
        for session in self.index.sessions.values():
            if session.send is not None:
                session.send(_close(code, reason))

    def _requeue(self, execution: LiveExecution) -> None:
        """I4: an execution assigned but never reported started (its ``execute`` may
        never have arrived) goes back to the queue, without using up a retry."""
        session = self.index.sessions.get(execution.session_id or "")
        if session is not None:
            session.executions.discard(execution.id)
        log.info("re-dispatching %s, which never started", execution.ref)
        execution.state = "queued"
        execution.session_id = None
        self.index.queue[execution.id] = None
        self.batch.update(T_EXECUTION, execution.id, assigned_at=None, session_id=None)
        self.dispatcher.request()

    def list_agents(self) -> list[dict[str, Any]]:
        now = self.clock.monotonic()
        return [
            {
                "session_id": s.id,
                "environment": self.environments.names.get(s.environment_id),
                "repositories": sorted(s.repositories),
                "concurrency": s.concurrency,
                "provides": dict(sorted(s.provides.items())),
                "connected": s.send is not None,
                "running": len(s.executions),
                "waiting": len(s.waiting),
                "limit": s.held_limit,
                "draining": s.draining,
                "last_seen_seconds": round(now - s.last_seen, 3),
            }
            for s in self.index.sessions.values()
        ]

    def disconnect(self, session: Session, send: Send) -> None:
        # A newer connection may already have replaced this one. (`==`, not `is`:
        # each access to a bound method makes a new object.)
        if session.send == send:
            session.send = None

    def heartbeat(self, session: Session, executions: list[str] | None = None) -> None:
        """Any message from an agent; a heartbeat also lists what it still runs.

        A started execution of this session that the agent no longer lists has
        been lost (its process gone without a report): it is abandoned.
        """
        now = session.last_seen = self.clock.monotonic()
        if executions is None:
            return
        running = set(executions)
        for id in list(session.executions):
            execution = self.index.live.get(id)
            if execution is None or execution.ref in running:
                continue
            if execution.started:
                log.warning("agent %s no longer runs %s", session.id, execution.ref)
                self._lost(execution)
            elif (
                execution.assigned_at is not None
                and now - execution.assigned_at > self.settings.start_timeout
            ):
                # I4: the agent lists what it has received; this never arrived.
                self._requeue(execution)

    def _lost(self, execution: LiveExecution) -> None:
        if not execution.started:
            self._requeue(execution)
            return
        self.machine.finish(
            execution,
            "abandoned",
            error={
                "type": "coflux.Abandoned",
                "message": "the agent running it was lost",
                "traceback": "",
            },
        )

    def _expire(self, session: Session) -> None:
        for id in list(session.executions):
            if id in self.index.live:
                self._lost(self.index.live[id])
        self.index.sessions.pop(session.id, None)

    async def sweep(self) -> None:
        """Every heartbeat interval, expire the sessions silent for too long.

        Silence is counted only while the server could listen: a sweep that
        wakes late (the loop busy in one long pass, the process stalled or not
        scheduled) first credits every session with the time it overslept. An
        agent's frames sent meanwhile wait unread in the socket, and after the
        stall this sweep would otherwise run before them (its timer is due in
        the same turn as their arrival) and declare a working agent lost.
        """
        interval = self.settings.heartbeat_interval
        last = self.clock.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = self.clock.monotonic()
            self.excuse(now - last - interval)
            last = now
            self.expire_silent()

    def excuse(self, deaf: float) -> None:
        """The server could not hear its agents for ``deaf`` seconds: that is not their silence."""
        if deaf <= 0:
            return
        now = self.clock.monotonic()
        for session in self.index.sessions.values():
            session.last_seen = min(now, session.last_seen + deaf)

    def expire_silent(self) -> None:
        """Expire the sessions not heard from for the agent timeout (one whose
        frame the server is still reading, waiting to commit earlier messages
        first, is heard: the server is the one behind)."""
        now = self.clock.monotonic()
        for session in list(self.index.sessions.values()):
            if session.reading:
                continue
            if now - session.last_seen > self.settings.agent_timeout:
                log.info("agent session %s timed out", session.id)
                if session.send is not None:
                    session.send(_close(CLOSE_TIMED_OUT, "timed out"))
                self._expire(session)
