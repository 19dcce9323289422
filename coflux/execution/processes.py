"""Every process an execution starts dies with its attempt.

A task may start processes (``sh``, a compiler, a server for its tests). When
the attempt ends, by its agent's choice or because the agent itself is gone
(``kill -9``, the OOM killer), all of them must be gone before a retry can
start elsewhere, or two attempts of one step run at once.

Three mechanisms, each cheap, together covering what one alone misses:

* The execution process leads a process group of its own (the agent starts
  it with a new session), so whatever it starts is in that group unless it
  leaves it; the agent kills the group when it aborts an execution and when
  an execution process exits.
* The execution process is a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``):
  a process that leaves the group (``setsid``, a daemon's double fork) and
  whose parent dies is re-parented to it rather than to init, so it is still
  found among its descendants.
* When the agent dies, the execution process sees its socket close, kills all
  its descendants (read from ``/proc``), and exits. That takes milliseconds,
  where the server waits the agent timeout before it retries.

A cgroup would hold every descendant whatever it does, but needs a writable
cgroup tree (root, or systemd delegation), which most places that run an
agent don't give; these need nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Have orphaned descendants re-parented to this process; whether it could."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_by_parent() -> dict[int, list[int]]:
    """Every live process's children, from all of ``/proc`` (zombies left out:
    they are dead already)."""
    found: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit():
            parent = _parent(int(entry))
            if parent is not None:
                found.setdefault(parent, []).append(int(entry))
    return found


def _parent(pid: int) -> int | None:
    """The parent of a live process; None for a zombie or one that is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # ``pid (name) state ppid ...``; the name may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 2 or fields[0] == b"Z":
        return None
    return int(fields[1])


def _children(pid: int) -> list[int] | None:
    """The live children of ``pid`` from its threads' ``children`` files (a few
    small reads, where a scan of ``/proc`` reads every process); None where
    the kernel doesn't provide them."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", "rb") as f:
                children.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{thread}"):
                continue  # the thread ended meanwhile
            return None
        except OSError:
            continue
    return [child for child in children if _parent(child) is not None]


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid``, parents before their children."""
    out: list[int] = []
    pending = [pid]
    every: dict[int, list[int]] | None = None
    while pending:
        parent = pending.pop(0)
        children = _children(parent) if every is None else None
        if children is None:
            if every is None:
                every = children_by_parent()
            children = every.get(parent, [])
        out.extend(children)
        pending.extend(children)
    return out


def kill_descendants(pid: int, rounds: int = 5) -> int:
    """SIGKILL every descendant of ``pid``, again while new ones appear (a fork
    racing the kill); return how many were signalled."""
    killed = 0
    for _ in range(rounds):
        found = descendants(pid)
        if not found:
            break
        for child in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
                killed += 1
    return killed


def kill_group(pgid: int) -> None:
    """SIGKILL a process group, if any of it is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap() -> None:
    """Collect the exit status of children that have ended: orphans re-parented to
    a subreaper are nobody else's to wait for, and would stay zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
