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
    """Every process's children, from ``/proc`` (empty where there is none)."""
    found: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # ``pid (name) state ppid ...``; the name may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            found.setdefault(int(fields[1]), []).append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``, parents before their children."""
    children = children_by_parent()
    out: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop(0)
        out.append(child)
        pending.extend(children.get(child, []))
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
