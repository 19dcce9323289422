"""The agent's side of its execution processes: start them, talk to them, kill them.

Each worker is a ``python -m coflux.execution`` subprocess that imported the
repositories once and runs one execution at a time; it lives in its own
process group so that killing it takes whatever it started down too. The pool
keeps a spare idle worker ready, so a call to a task never waits for Python to
start.

``reload`` (for ``coflux dev``) swaps in processes with the code as it is on
disk now: a new generation of workers, checked by starting one before the old
ones are let go, so code that fails to import never replaces code that works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import RepositoryError
from ..execution import framing, processes

log = logging.getLogger("coflux.agent")

OnMessage = Callable[["Worker", framing.FromExecution], Awaitable[None] | None]


class Worker:
    def __init__(self, process: asyncio.subprocess.Process, reader: Any, writer: Any) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.execution_id: str | None = None
        #: The pool's generation of code this worker imported (see ``WorkerPool.reload``).
        self.generation = 0
        #: Manifests of the repositories as this worker imported them, when asked for.
        self.manifests: dict[str, list[dict[str, Any]]] = {}
        self._listener: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: framing.ToExecution) -> None:
        self.writer.write(framing.encode(message))

    async def receive(self) -> framing.FromExecution | None:
        try:
            header = await self.reader.readexactly(framing.HEADER.size)
            (length,) = framing.HEADER.unpack(header)
            return framing.decode_from_execution(await self.reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def listen(self, on_message: OnMessage, on_exit: Callable[[Worker], None]) -> None:
        async def loop() -> None:
            while (message := await self.receive()) is not None:
                result = on_message(self, message)
                if asyncio.iscoroutine(result):
                    await result
            on_exit(self)

        self._listener = asyncio.create_task(loop())

    def kill(self) -> None:
        """Kill the worker and everything it started: its descendants (also those
        that left its process group), then the group."""
        if self.process.returncode is None:
            processes.kill_descendants(self.process.pid)
        processes.kill_group(self.process.pid)
        self.writer.close()


class WorkerPool:
    def __init__(self, modules: list[str], store_root: Path, spares: int = 1) -> None:
        self.modules = modules
        self.store_root = store_root
        self.spares = spares
        #: The generation of code idle workers must have; ``_generations`` counts tries.
        self.generation = 0
        self._generations = 0
        #: Why the code on disk doesn't import (after a failed ``reload``): no
        #: process is started with it; idle workers with the previous code serve.
        self.broken: str | None = None
        #: How many workers ``start`` began with; a reload starts as many at once.
        self.warm = 1
        self._released = asyncio.Event()
        self._idle: list[Worker] = []
        self._starting: set[asyncio.Task[Worker]] = set()
        self.busy: dict[str, Worker] = {}
        #: Every process started and not yet reaped, including those still starting.
        self._processes: set[asyncio.subprocess.Process] = set()
        self.on_message: OnMessage | None = None
        self.on_exit: Callable[[Worker], None] | None = None

    async def spawn(self, with_manifests: bool = False, generation: int | None = None) -> Worker:
        generation = self.generation if generation is None else generation
        parent, child = socket.socketpair()
        env = {
            **os.environ,
            "COFLUX_WORKER_FD": str(child.fileno()),
            "COFLUX_CAS": str(self.store_root),
        }
        if with_manifests:
            env["COFLUX_WORKER_MANIFESTS"] = "1"
        # The agent's working directory: relative module paths resolve the same way.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "coflux.execution",
            *self.modules,
            pass_fds=[child.fileno()],
            env=env,
            start_new_session=True,
        )
        self._processes.add(process)
        child.close()
        reader, writer = await asyncio.open_connection(sock=parent)
        worker = Worker(process, reader, writer)
        worker.generation = generation
        ready = await worker.receive()
        if not isinstance(ready, framing.Ready) or ready.error is not None:
            worker.kill()
            self._processes.discard(process)
            error = (
                ready.error
                if isinstance(ready, framing.Ready)
                else f"exited with code {await process.wait()}"
            )
            raise RepositoryError(f"execution process failed to start: {error}")
        worker.manifests = ready.manifests or {}
        assert self.on_message is not None and self.on_exit is not None
        worker.listen(self.on_message, self._exited)
        return worker

    def _exited(self, worker: Worker) -> None:
        # What it started dies with it (a task that killed its own process).
        processes.kill_group(worker.pid)
        if worker in self._idle:
            self._idle.remove(worker)
        self._processes.discard(worker.process)
        if self.on_exit is not None:
            self.on_exit(worker)

    async def start(self, count: int) -> None:
        """Have ``count`` idle workers; fail only if none could start."""
        self.warm = count
        missing = max(0, count - len(self._idle))
        started = await asyncio.gather(
            *(self.spawn() for _ in range(missing)), return_exceptions=True
        )
        errors = [e for e in started if isinstance(e, BaseException)]
        self._idle.extend(w for w in started if isinstance(w, Worker))
        if errors and not self._idle:
            raise errors[0]
        for error in errors:
            log.error("%s", error)

    def fill(self, count: int) -> None:
        """Start workers in the background until ``count`` exist (idle, busy or
        starting), so that a burst of up to ``count`` executions never waits
        for Python to start."""
        missing = count - len(self._idle) - len(self.busy) - len(self._starting)
        for _ in range(max(0, missing)):
            self._start_one()

    def _top_up(self) -> None:
        if self.broken is not None:
            return
        missing = self.spares - len(self._idle) - len(self._starting)
        for _ in range(max(0, missing)):
            self._start_one()

    def _start_one(self) -> None:
        task = asyncio.create_task(self.spawn())
        self._starting.add(task)

        def done(t: asyncio.Task[Worker]) -> None:
            self._starting.discard(t)
            if not t.cancelled() and t.exception() is None:
                self._keep(t.result())
            elif not t.cancelled():
                log.error("%s", t.exception())

        task.add_done_callback(done)

    async def acquire(self, execution_id: str) -> Worker:
        while not self._idle and self.broken is not None and self.busy:
            # The code on disk doesn't import: wait for a worker with the previous code.
            self._released.clear()
            await self._released.wait()
        worker = self._idle.pop() if self._idle else await self.spawn()
        worker.execution_id = execution_id
        self.busy[execution_id] = worker
        self._top_up()
        return worker

    def release(self, worker: Worker) -> None:
        if worker.execution_id is not None:
            self.busy.pop(worker.execution_id, None)
        worker.execution_id = None
        if worker.process.returncode is None:
            self._keep(worker)
        self._released.set()

    def _keep(self, worker: Worker) -> None:
        """An idle worker waits for the next execution, unless its code is out of date."""
        if worker.generation == self.generation:
            self._idle.append(worker)
        else:
            worker.kill()

    async def reload(self) -> dict[str, list[dict[str, Any]]]:
        """Serve the code as it is now; return its manifests.

        As many processes as were started warm start with the new code at
        once (one also reports the manifests): if the code fails to import,
        ``RepositoryError`` says why and the current workers keep serving. Else
        idle workers are replaced and busy ones finish what they run, then go.
        """
        self._generations += 1
        candidate = self._generations
        started = await asyncio.gather(
            self.spawn(with_manifests=True, generation=candidate),
            *(self.spawn(generation=candidate) for _ in range(max(0, self.warm - 1))),
            return_exceptions=True,
        )
        fresh = [w for w in started if isinstance(w, Worker)]
        failure = next((e for e in started if isinstance(e, BaseException)), None)
        if failure is not None:
            for worker in fresh:
                worker.kill()
            if isinstance(failure, RepositoryError):
                self.broken = str(failure)
            raise failure
        self.broken = None
        self.generation = candidate
        for worker in list(self._idle):
            self._idle.remove(worker)
            worker.kill()
        self._idle.extend(fresh)
        self._top_up()
        return fresh[0].manifests

    def abort(self, execution_id: str) -> bool:
        worker = self.busy.pop(execution_id, None)
        if worker is None:
            return False
        worker.execution_id = None
        worker.kill()
        return True

    async def close(self) -> None:
        for task in list(self._starting):
            task.cancel()
        for worker in self._idle + list(self.busy.values()):
            worker.writer.close()
        for process in self._processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        await asyncio.gather(*(p.wait() for p in self._processes), return_exceptions=True)
        self._processes.clear()
