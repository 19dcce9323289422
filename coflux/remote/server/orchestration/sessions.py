"""Agent sessions and dispatch: who is connected, who is silent, what runs where.

A mixin of :class:`~.project.ProjectOrchestrator`, kept apart so each file
reads in one sitting; it uses the orchestrator's live state and its batch.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

from ....records.connection import CLOSE_REPLACED, CLOSE_TIMED_OUT
from ....records.placement import Tags, satisfies
from ..tables import T_EXECUTION
from .state import LiveExecution, Send, Session

if TYPE_CHECKING:
    from ..settings import Settings
    from .batch import Batch

log = logging.getLogger("coflux.server")


def _close(code: int, reason: str) -> dict[str, Any]:
    """The message that makes an agent's connection close (see ``AgentConnection``)."""
    return {"method": "close", "params": {"reason": reason, "code": code}}


class AgentSessions:
    """Connect, heartbeat, expire and dispatch; the rest of the state lives in the orchestrator."""

    # Provided by ProjectOrchestrator.
    sessions: dict[str, Session]
    live: dict[int, LiveExecution]
    queue: dict[int, None]
    live_refs: dict[str, int]
    settings: Settings
    batch: Batch
    environment_names: dict[int, str]
    _dispatch_timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:

        def environment_id(self, name: str, archived: bool = False) -> int: ...

        def _finish(
            self,
            execution: LiveExecution,
            state: str,
            value: dict[str, Any] | None = None,
            error: dict[str, Any] | None = None,
            reused_from: int | None = None,
            successor: LiveExecution | None = None,
        ) -> bool: ...

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
        environment_id = self.environment_id(environment)
        now = time.monotonic()
        session = self.sessions.get(session_id)
        if session is not None and session.send is not None and session.send != send:
            # The same agent again while its old connection looks open (a network
            # cut the server has not noticed): the old one is closed, and what
            # the agent still runs stays with it (its hello lists them).
            session.send(_close(CLOSE_REPLACED, "replaced by a newer connection of this session"))
        if session is None or session.environment_id != environment_id:
            if session is not None:
                self._expire(session)
            session = Session(session_id, environment_id, repositories, concurrency, send, now)
            self.sessions[session_id] = session
        else:
            session.repositories, session.concurrency = repositories, concurrency
            session.send, session.last_seen = send, now
        session.provides = dict(provides or {})
        still_running = set(executions)
        for id in list(session.executions):
            execution = self.live.get(id)
            if execution is not None and execution.ref not in still_running:
                self._lost(execution)
        self._request_dispatch()
        return session

    def abandon(self, session: Session, refs: list[str]) -> None:
        """Executions of this session its agent says it killed (see ``_lost``)."""
        for ref in refs:
            id = self.live_refs.get(ref)
            execution = self.live.get(id) if id is not None else None
            if execution is not None and execution.session_id == session.id:
                log.info("agent %s gave up %s", session.id, ref)
                self._lost(execution)

    def close_sessions(self, code: int, reason: str) -> None:
        """Close every agent's connection (they reconnect)."""
        for session in self.sessions.values():
            if session.send is not None:
                session.send(_close(code, reason))

    def _requeue(self, execution: LiveExecution) -> None:
        """I4: an execution assigned but never reported started (its ``execute`` may
        never have arrived) goes back to the queue, without using up a retry."""
        session = self.sessions.get(execution.session_id or "")
        if session is not None:
            session.executions.discard(execution.id)
        log.info("re-dispatching %s, which never started", execution.ref)
        execution.state = "queued"
        execution.session_id = None
        self.queue[execution.id] = None
        self.batch.update(T_EXECUTION, execution.id, assigned_at=None, session_id=None)
        self._request_dispatch()

    def list_agents(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "session_id": s.id,
                "environment": self.environment_names.get(s.environment_id),
                "repositories": sorted(s.repositories),
                "concurrency": s.concurrency,
                "provides": dict(sorted(s.provides.items())),
                "connected": s.send is not None,
                "running": len(s.executions),
                "draining": s.draining,
                "last_seen_seconds": round(now - s.last_seen, 3),
            }
            for s in self.sessions.values()
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
        now = session.last_seen = time.monotonic()
        if executions is None:
            return
        running = set(executions)
        for id in list(session.executions):
            execution = self.live.get(id)
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
        self._finish(
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
            if id in self.live:
                self._lost(self.live[id])
        self.sessions.pop(session.id, None)

    async def _sweep(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if now - session.last_seen > self.settings.agent_timeout:
                    log.info("agent session %s timed out", session.id)
                    if session.send is not None:
                        session.send(_close(CLOSE_TIMED_OUT, "timed out"))
                    self._expire(session)

    # --- dispatch --------------------------------------------------------------

    def _request_dispatch(self) -> None:
        """Assign what can be assigned just before the next commit (in the same transaction)."""
        self._dispatch_needed = True
        self.batch.schedule()

    def _dispatch(self) -> None:
        if not self._dispatch_needed:
            return
        self._dispatch_needed = False
        available = [s for s in self.sessions.values() if s.send is not None and s.free > 0]
        if not available or not self.queue:
            return
        now = time.time()
        next_due: float | None = None
        # Calls made by running executions go first: they unblock their callers,
        # where a new run would only add one more caller.
        queued = list(self.queue)
        calls = (i for i in queued if self.live[i].step.parent_execution_id is not None)
        runs = (i for i in queued if self.live[i].step.parent_execution_id is None)
        for id in itertools.chain(calls, runs):
            if id not in self.queue:
                continue
            execution = self.live[id]
            if execution.wait_for or execution.linked_to is not None:
                continue
            if execution.execute_after is not None and execution.execute_after > now:
                due = execution.execute_after
                next_due = due if next_due is None else min(next_due, due)
                continue
            requires = execution.step.options.get("requires") or {}
            session = next(
                (
                    s
                    for s in available
                    if s.free > 0
                    and s.environment_id == execution.environment_id
                    and execution.step.repository in s.repositories
                    and satisfies(s.provides, requires)
                ),
                None,
            )
            if session is None:
                # No connected agent can take it (now): it stays queued, and a
                # later connect or freed slot asks for dispatch again.
                continue
            self._assign(execution, session)
            if not any(s.free > 0 for s in available):
                break
        if next_due is not None:
            # Come back when the earliest delayed execution is due.
            if self._dispatch_timer is not None:
                self._dispatch_timer.cancel()
            self._dispatch_timer = asyncio.get_running_loop().call_later(
                max(0.0, next_due - now), self._request_dispatch
            )

    def _assign(self, execution: LiveExecution, session: Session) -> None:
        del self.queue[execution.id]
        execution.state = "assigned"
        execution.session_id = session.id
        execution.assigned_at = time.monotonic()
        session.executions.add(execution.id)
        self.batch.update(T_EXECUTION, execution.id, assigned_at=time.time(), session_id=session.id)
        message = {
            "method": "execute",
            "params": {
                "execution_id": execution.ref,
                "repository": execution.step.repository,
                "target": execution.step.target,
                "arguments": execution.arguments or execution.step.arguments,
                "timeout": float(execution.step.options.get("timeout") or 0),
            },
        }
        send = session.send
        assert send is not None
        # An assignment acknowledges nothing: lost to a power cut with the
        # transaction, the execution is created again when its caller re-sends.
        self.batch.after_commit(lambda: send(message), durable=False)
