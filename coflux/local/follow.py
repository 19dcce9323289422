"""``coflux dev`` follows git's HEAD: which branch is checked out now, read cheaply and often.

A branch switch, a checkout or a detached HEAD changes which environment the
code on disk belongs to. :class:`HeadWatcher` reads ``HEAD`` straight from the
git directory (no subprocess, so it can poll a few times a second), treats a
rebase in progress as its branch (git detaches HEAD while it rebases), and
waits while git holds its index lock, so a checkout half-way through is never
taken for the new branch's code.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from .branches import ci_branch

#: How often HEAD is read (seconds).
POLL_INTERVAL = 0.2
#: How long HEAD must stay the same before a switch counts: git updates the
#: work tree and its index before HEAD, so a checkout ends with HEAD.
SETTLE = 0.15
#: A git lock older than this (seconds) is stale.
STALE_LOCK = 10.0


class HeadMoved(Exception):
    """HEAD moved to another branch while code was being loaded: it belongs elsewhere."""


@dataclass(frozen=True)
class Head:
    """What is checked out: a branch (None for a detached HEAD), and HEAD's raw text."""

    branch: str | None
    raw: str

    def describe(self) -> str:
        if self.branch is not None:
            return f"branch {self.branch}"
        return f"a detached HEAD at {self.raw[:12]}"


def git_dir(root: Path) -> Path | None:
    """The git directory of the repository holding ``root`` (a worktree's own one too)."""
    for folder in (root, *root.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():  # a worktree or submodule: "gitdir: PATH"
            text = dot_git.read_text().strip()
            if text.startswith("gitdir:"):
                path = Path(text.removeprefix("gitdir:").strip())
                return path if path.is_absolute() else (folder / path).resolve()
    return None


def read_head(directory: Path) -> Head:
    """HEAD as git has it now; a rebase in progress counts as the branch it rebases."""
    raw = (directory / "HEAD").read_text().strip()
    if raw.startswith("ref: refs/heads/"):
        return Head(raw.removeprefix("ref: refs/heads/"), raw)
    for state in ("rebase-merge", "rebase-apply"):
        head_name = directory / state / "head-name"
        if head_name.is_file():
            name = head_name.read_text().strip().removeprefix("refs/heads/")
            return Head(name, raw)
    found = ci_branch()
    return Head(found[1] if found else None, raw)


def _busy(directory: Path) -> bool:
    """Whether git is changing the work tree now (it holds the index lock meanwhile).

    A lock older than ``STALE_LOCK`` seconds is one a crashed git left behind
    (git itself refuses to work until it is removed): it doesn't count.
    """
    now = time.time()
    for name in ("index.lock", "HEAD.lock"):
        try:
            if now - (directory / name).stat().st_mtime < STALE_LOCK:
                return True
        except OSError:
            continue
    return False


class HeadWatcher:
    """The branch checked out in a repository, as last settled."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.head = read_head(directory)

    def moved(self) -> bool:
        """Whether git is busy or HEAD is on another branch than the one last settled."""
        return _busy(self.directory) or read_head(self.directory).branch != self.head.branch

    async def settled(self) -> Head:
        """Wait until git is done and HEAD has stayed the same for ``SETTLE`` seconds."""
        head = read_head(self.directory)
        since = time.monotonic()
        while True:
            await asyncio.sleep(POLL_INTERVAL / 4)
            if _busy(self.directory):
                since = time.monotonic()
                continue
            now = read_head(self.directory)
            if now.branch != head.branch:
                head, since = now, time.monotonic()
            elif time.monotonic() - since >= SETTLE:
                self.head = head
                return head
