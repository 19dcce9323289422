"""The projects a server hosts: one database (file or schema) and one orchestrator each.

On PostgreSQL several server processes may share the database; each project
is then orchestrated by the one holding its lease (see ``..lease``), and the
others forward its requests there (``..forwarding``), taking the lease over
when its holder is gone.

When the database refuses a write (a full disk, say), what the orchestrator
holds in memory no longer matches what is stored: it is replaced by a new one
that reads its picture from the database, as after a restart of the server,
while the server keeps serving (agents are told to reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from ....errors import CofluxError, Conflict, NotFound
from ....records.connection import CLOSE_MOVED
from ..db import Database, PostgresDatabase, open_database
from ..lease import Leases
from ..refusals import refusal
from ..settings import Settings
from .project import ProjectOrchestrator

log = logging.getLogger("coflux.server")

DEFAULT_ENVIRONMENT = "production"
#: How often a lease holder checks that it still holds each lease (seconds).
LEASE_CHECK_INTERVAL = 1.0
#: How long another process's lease is taken as still held, before trying to
#: take it again (each try is a new database connection); a request that
#: finds the holder unreachable tries at once.
ELSEWHERE_FOR = 1.0


class Elsewhere(CofluxError):
    """Another server process orchestrates the project."""

    code = "elsewhere"
    status_code = 503

    def __init__(self, project: str, holder: str | None) -> None:
        super().__init__(f"project {project} is orchestrated by {holder or 'another server'}")
        self.holder = holder


class Projects:
    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self.settings = settings
        self.database = database or open_database(
            settings.database_url, settings.projects_dir, settings.synchronous
        )
        self._open: dict[str, ProjectOrchestrator] = {}
        self._lock = asyncio.Lock()
        self.leases: Leases | None = None
        #: Projects another process was found to orchestrate: when, and where.
        self._elsewhere: dict[str, tuple[float, str]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._restarts: set[asyncio.Task[None]] = set()
        if isinstance(self.database, PostgresDatabase):
            self.leases = Leases(
                self.database.url, self.database.engine_for("coflux"), settings.advertised_url
            )

    def names(self, visible_to: str | None = None) -> list[str]:
        return [n for n in self.database.names() if visible_to in (None, n)]

    async def get(self, name: str, visible_to: str | None = None) -> ProjectOrchestrator:
        """The project ``name``; with ``visible_to`` (a token's project), any other
        project is answered exactly as an unknown one, so nothing tells whether it exists."""
        orchestrator = self._open.get(name)
        if orchestrator is not None and visible_to in (None, name):
            return orchestrator
        if visible_to not in (None, name) or not self.database.exists(name):
            raise NotFound(
                f"unknown project {name!r}; create it with `coflux projects create {name}`"
            )
        return await self._start(name)

    async def holder(self, name: str, fresh: bool = False) -> str | None:
        """None when this process orchestrates project ``name`` (taking its lease
        if nobody holds it), else the URL of the process that does (as found
        within the last ``ELSEWHERE_FOR`` seconds, unless ``fresh``)."""
        if self.leases is None or name in self._open:
            return None
        known = self._elsewhere.get(name)
        if known is not None and not fresh and time.monotonic() - known[0] < ELSEWHERE_FOR:
            return known[1]
        try:
            if not self.database.exists(name):
                return None  # the route answers "unknown project"
            await self._start(name)
        except Elsewhere as e:
            holder = e.holder or self.settings.advertised_url
            self._elsewhere[name] = (time.monotonic(), holder)
            return holder
        except CofluxError:
            return None  # an invalid name: the route answers that too
        self._elsewhere.pop(name, None)
        return None

    async def _start(self, name: str) -> ProjectOrchestrator:
        async with self._lock:
            if name not in self._open:
                guard = None
                if self.leases is not None:
                    if not await asyncio.to_thread(self.leases.acquire, name):
                        holder = await asyncio.to_thread(self.leases.holder_of, name)
                        raise Elsewhere(name, holder)
                    guard = functools.partial(self.leases.check, name)
                    if self._watcher is None:
                        self._watcher = asyncio.create_task(self._watch_leases())
                try:
                    engine = self.database.open(name)
                    orchestrator = ProjectOrchestrator(name, engine, self.settings, guard)
                    orchestrator.batch.on_refused = functools.partial(
                        self._refused, name, orchestrator
                    )
                    await orchestrator.start()
                except CofluxError:
                    if self.leases is not None:
                        self.leases.release(name)
                    raise
                except Exception as e:
                    # The database can't be read (unreachable): a 503, not a 500.
                    if self.leases is not None:
                        self.leases.release(name)
                    raise refusal(e) from None
                except BaseException:
                    if self.leases is not None:
                        self.leases.release(name)
                    raise
                self._open[name] = orchestrator
            return self._open[name]

    def _refused(self, name: str, orchestrator: ProjectOrchestrator, error: CofluxError) -> None:
        """The database refused a write of ``orchestrator`` (its batch refuses
        every later one): replace it by one that reads what is stored. Agents
        reconnect to the new one and send again what was not acknowledged."""
        if self._open.get(name) is not orchestrator:
            return
        log.warning("project %s: %s; reloading its state from the database", name, error)
        del self._open[name]
        orchestrator.close_sessions(CLOSE_MOVED, "the project's orchestrator is reloading")
        task = asyncio.get_running_loop().create_task(self._restart(name, orchestrator))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, name: str, old: ProjectOrchestrator) -> None:
        with contextlib.suppress(Exception):
            await old.stop()
        self.database.release(old.engine)
        if name in self._open:
            return  # a request started it meanwhile
        try:
            await self._start(name)
        except Exception as e:  # the next request tries again
            log.warning("project %s not reloaded yet: %s", name, e)

    async def _watch_leases(self) -> None:
        """Stop orchestrating a project whose lease connection is gone: another
        process may hold the lease by now (its writes are refused already, see
        ``Leases.check``); its agents reconnect and are forwarded there."""
        leases = self.leases
        assert leases is not None
        while True:
            await asyncio.sleep(LEASE_CHECK_INTERVAL)
            if await asyncio.to_thread(leases.alive):
                continue
            for name in [n for n in self._open if n not in leases.held()]:
                log.warning("lost the lease of project %s; no longer orchestrating it", name)
                orchestrator = self._open.pop(name)
                orchestrator.close_sessions(CLOSE_MOVED, "the project's orchestrator moved")
                with contextlib.suppress(Exception):
                    await orchestrator.stop()
                self.database.release(orchestrator.engine)

    async def create(self, name: str, environment: str | None = DEFAULT_ENVIRONMENT) -> None:
        if self.database.exists(name):
            raise Conflict(f"project {name!r} already exists")
        orchestrator = await self._start(name)
        if environment:
            await orchestrator.create_environment(environment, None)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        for orchestrator in self._open.values():
            await orchestrator.stop()
            self.database.release(orchestrator.engine)
        self._open.clear()
        if self.leases is not None:
            self.leases.close()
        self.database.close()
