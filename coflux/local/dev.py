"""The dev loop: an agent for the branch's environment that reloads when code changes.

``coflux dev`` registers the workspace's modules in the branch's environment,
serves them with an :class:`~coflux.local.agent.Agent`, and watches the
repository (watchfiles). On a change to a Python file it starts execution
processes with the new code and re-registers what changed; code that fails to
import is reported and the previous code keeps serving until it is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

from watchfiles import PythonFilter, awatch

from ..errors import RepositoryError
from .agent import Agent

#: Folders whose changes never reload: tools' state, environments, caches.
IGNORED_DIRS = (
    ".coflux",
    ".git",
    ".hg",
    ".venv",
    "venv",
    ".env",
    "env",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    "node_modules",
    "site-packages",
    "build",
    "dist",
)


class SourceFilter(PythonFilter):
    """Python files of the repository, outside the folders in ``IGNORED_DIRS``."""

    ignore_dirs = IGNORED_DIRS


Report = Callable[[str], None]


async def reload_once(agent: Agent, changed_files: list[str], say: Report) -> bool:
    """Swap in the code on disk; report one line; return whether it now serves."""
    started = time.monotonic()
    try:
        changed = await agent.reload()
    except RepositoryError as e:
        say(f"error: {e}; still serving the previous code")
        return False
    except TimeoutError:
        say("error: the server did not confirm the new manifest; retrying on the next change")
        return False
    took = time.monotonic() - started
    what = f"changed: {', '.join(changed)}" if changed else "no target changed"
    files = ", ".join(changed_files[:3]) + (" …" if len(changed_files) > 3 else "")
    say(f"reloaded in {took:.2f}s after {files} ({what})")
    return True


async def develop(agent: Agent, root: Path, say: Report, debounce_ms: int = 50) -> None:
    """Serve ``agent`` and reload it on every change under ``root``, until SIGINT/SIGTERM.

    Code that doesn't import at start is reported too, and served once fixed.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving: asyncio.Task[None] | None = None

    async def start() -> asyncio.Task[None] | None:
        try:
            agent.manifests = await agent.pool.reload()
        except RepositoryError as e:
            say(f"error: {e}; fix it and save, and the agent starts")
            return None
        task = asyncio.create_task(agent.run())
        task.add_done_callback(lambda _: stop.set())
        targets = sum(len(t) for t in agent.manifests.values())
        say(f"serving {', '.join(agent.manifests)} ({targets} targets)")
        return task

    try:
        serving = await start()
        async for changes in awatch(
            root,
            watch_filter=SourceFilter(),
            debounce=debounce_ms,
            step=20,
            stop_event=stop,
            recursive=True,
        ):
            files = sorted({_relative(path, root) for _, path in changes})
            if serving is None:
                serving = await start()
            else:
                await reload_once(agent, files, say)
    finally:
        agent.stop()
        if serving is not None:
            await serving
        else:
            await agent.pool.close()


def _relative(path: str, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(root))
    return path
