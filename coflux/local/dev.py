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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, PythonFilter, awatch

from ..errors import CofluxError, RepositoryError
from ..remote.client import Client
from .agent import Agent
from .branches import ensure_environment, for_branch
from .config import Config, Workspace
from .follow import POLL_INTERVAL, Head, HeadMoved, HeadWatcher, git_dir
from .packages import POLL_INTERVAL as PACKAGES_INTERVAL
from .packages import PackageWatcher
from .provenance import check_dev

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

#: Seconds the first "serving" line waits for the server to hold the manifests;
#: after that it says the agent is still connecting (it registers once it is).
CONNECT_WAIT = 15.0


@dataclass
class Following:
    """How ``develop`` follows HEAD: the watcher, and the agent for a new HEAD (in its
    branch's environment, created if new), or None when it has none (a detached HEAD)."""

    watcher: HeadWatcher
    agent_for: Callable[[Head], Awaitable[Agent | None]]


async def reload_once(agent: Agent, changed_files: list[str], say: Report) -> bool | None:
    """Swap in the code on disk; report one line; return whether it now serves (None:
    not registered, as HEAD moved or git was busy meanwhile)."""
    started = time.monotonic()
    try:
        changed = await agent.reload()
    except HeadMoved:
        return None  # maybe another branch's code: the caller looks at HEAD again
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


async def develop(
    agent: Agent,
    root: Path,
    say: Report,
    debounce_ms: int = 50,
    following: Following | None = None,
) -> None:
    """Serve ``agent`` and reload it on every change under ``root``, until SIGINT/SIGTERM.

    Code that doesn't import at start is reported too, and served once fixed.
    With ``following``, a checkout of another branch moves serving to that
    branch's environment (one line says so), and a detached HEAD stops it
    until a branch is checked out: one branch's code is never registered in
    another's environment.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    current: Agent | None = agent
    serving: asyncio.Task[None] | None = None
    retired: list[tuple[Agent, asyncio.Task[None] | None]] = []
    lock = asyncio.Lock()

    async def start(prefix: str = "") -> asyncio.Task[None] | None:
        assert current is not None
        running = current
        try:
            running.manifests = await running.pool.reload()
        except RepositoryError as e:
            say(f"{prefix}error: {e}; fix it and save, and the agent starts")
            return None
        task = asyncio.create_task(running.run())
        # The agent stopping on its own (refused by the server) ends dev; a retired one doesn't.
        task.add_done_callback(lambda _: None if running is not current else stop.set())
        # "serving" is said once the server holds the manifests (the agent's hello
        # registers them): a run submitted on reading it would otherwise be refused
        # as "not registered" while the first execution processes start.
        connected = asyncio.ensure_future(running.requests.connected.wait())
        await asyncio.wait({connected, task}, timeout=CONNECT_WAIT, return_when="FIRST_COMPLETED")
        connected.cancel()
        targets = sum(len(t) for t in running.manifests.values())
        where = f" in {running.environment}" if following is not None else ""
        connecting = not running.requests.connected.is_set()
        waiting = f" (connecting to {running.server})" if connecting else ""
        say(f"{prefix}serving {', '.join(running.manifests)} ({targets} targets){where}{waiting}")
        return task

    async def switch(head: Head) -> None:
        nonlocal current, serving
        if current is not None:
            current.stop()  # running executions finish in the old environment
            retired.append((current, serving))
        current, serving = None, None
        assert following is not None
        try:
            current = await following.agent_for(head)
        except CofluxError as e:
            say(f"error: {head.describe()}: {e}; stopped serving until the next checkout")
            return
        if current is None:
            say(
                f"{head.describe()}: stopped serving; check out a branch "
                "(or set COFLUX_BRANCH) to serve again"
            )
            return
        _guard(current, following.watcher)
        serving = await start(f"{head.describe()}: ")

    served = following.watcher.head.branch if following is not None else None

    async def check_head() -> bool:
        """Move to HEAD's branch if it changed; return whether it did."""
        nonlocal served
        if following is None or not following.watcher.moved():
            return False
        head = await following.watcher.settled()
        if head.branch == served:
            return False
        served = head.branch
        await switch(head)
        return True

    async def reload_here(files: list[str]) -> None:
        assert current is not None
        if await reload_once(current, files, say) is None and not await check_head():
            # Git was only busy (a `git status` takes its lock too): the code on
            # disk is still this branch's, so it is registered after all.
            await reload_once(current, files, say)

    async def follow_head() -> None:
        while not stop.is_set():
            await asyncio.sleep(POLL_INTERVAL)
            async with lock:
                with contextlib.suppress(OSError):  # HEAD mid-rename: read it next time
                    await check_head()

    async def follow_packages() -> None:
        # Code hashes include installed versions: an upgrade reloads like a save.
        packages = PackageWatcher()
        while not stop.is_set():
            await asyncio.sleep(PACKAGES_INTERVAL)
            changed = await asyncio.to_thread(packages.changed)
            if changed:
                async with lock:
                    if current is not None and serving is not None:
                        await reload_here([f"installing {', '.join(changed)}"])

    watching = None
    upgrades = asyncio.create_task(follow_packages())
    # The files are watched from before the code is first loaded: an edit saved
    # while it loads is a change like any later one, not lost (it was, when
    # watching began after the first "serving" line).
    changed: asyncio.Queue[set[tuple[Change, str]] | None] = asyncio.Queue()

    async def watch() -> None:
        try:
            async for changes in awatch(
                root,
                watch_filter=SourceFilter(),
                debounce=debounce_ms,
                step=20,
                stop_event=stop,
                recursive=True,
            ):
                changed.put_nowait(changes)
        finally:
            changed.put_nowait(None)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)  # awatch adds its watches before its first await
    try:
        if following is not None:
            _guard(agent, following.watcher)
            watching = asyncio.create_task(follow_head())
        serving = await start()
        while (changes := await changed.get()) is not None:
            files = sorted({_relative(path, root) for _, path in changes})
            async with lock:
                if await check_head() or current is None:
                    continue  # switched (with the code on disk), or paused
                if serving is None:
                    serving = await start()
                else:
                    await reload_here(files)
    finally:
        upgrades.cancel()
        watcher.cancel()
        if watching is not None:
            watching.cancel()
        if current is not None:
            retired.append((current, serving))
        for old, task in retired:
            old.stop()
            if task is not None:
                await task
            else:
                await old.pool.close()


def following_head(
    config: Config,
    client: Client,
    make_agent: Callable[[Workspace], Agent],
    allow_dirty: bool = False,
) -> Following | None:
    """Following HEAD, when the environment comes from the git branch (not when it is given).

    As at start, a shared server's production is served only with ``allow_dirty``:
    checking out a production branch otherwise stops serving, saying why."""
    directory = git_dir(config.root)
    if config.sources.get("environment") != "git" or directory is None:
        return None

    async def agent_for(head: Head) -> Agent | None:
        if head.branch is None:
            return None
        moved = for_branch(config, head.branch)
        check_dev(moved, allow_dirty)
        # Created on first use, as at start; the client is synchronous, so not on the loop.
        await asyncio.to_thread(ensure_environment, client, moved)
        return make_agent(moved)

    return Following(HeadWatcher(directory), agent_for)


def _guard(agent: Agent, watcher: HeadWatcher) -> None:
    """Before an agent registers reloaded code, HEAD must still be its branch."""
    agent.may_register = lambda: not watcher.moved()


def _relative(path: str, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(root))
    return path
