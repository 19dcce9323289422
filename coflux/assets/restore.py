"""Restoring an asset into a directory, never writing outside it.

The entries were validated (no ``..``, no absolute paths), and the walk below
adds what validation can't see: a directory on the way that is already a
symbolic link is refused, not followed (every directory is opened with
``O_NOFOLLOW`` relative to its parent's descriptor, never by path).

A restore writes nothing until it can write everything: files are first
written, from verified blobs, into a staging folder inside the target, then
moved into place. A missing or corrupt blob, an existing file without
``force``, or a link on the way stops it with the target as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..cache import BlobStore
from ..errors import AssetError, BlobError
from .manifest import Entry
from .persist import FILES_AT_ONCE

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def restore(
    store: BlobStore,
    entries: list[Entry],
    target: Path,
    force: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Write ``entries`` under ``target`` (created if missing) and return it."""
    target = Path(target).absolute()
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    staging = f".coflux-restore-{uuid.uuid4().hex}"
    try:
        _check_destinations(root, entries, force, target)
        os.mkdir(staging, 0o700, dir_fd=root)
        staged = os.open(staging, _DIRECTORY, dir_fd=root)
        try:
            _write_all(store, entries, staged, on_bytes)
            for index, entry in enumerate(entries):
                parent, name = _open_parent(root, entry.path, create=True)
                try:
                    os.replace(str(index), name, src_dir_fd=staged, dst_dir_fd=parent)
                finally:
                    os.close(parent)
        finally:
            os.close(staged)
    except BaseException:
        shutil.rmtree(target / staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    else:
        os.rmdir(staging, dir_fd=root)
    finally:
        os.close(root)
    return target


def _check_destinations(root: int, entries: list[Entry], force: bool, target: Path) -> None:
    existing = []
    for entry in entries:
        try:
            parent, name = _open_parent(root, entry.path, create=False)
        except FileNotFoundError:
            continue
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            continue
        finally:
            os.close(parent)
        if stat.S_ISDIR(info.st_mode):
            raise AssetError(f"can't restore {entry.path}: a directory is in the way")
        existing.append(entry.path)
    if existing and not force:
        what = (
            f"{existing[0]} and {len(existing) - 1} more file(s)" if existing[1:] else existing[0]
        )
        raise AssetError(
            f"{what} already exist in {target}; pass --force to overwrite (or restore elsewhere)"
        )


def _open_parent(root: int, path: str, create: bool) -> tuple[int, str]:
    """A descriptor of the directory that holds ``path``, reached part by part
    without following links; and the file's name in it."""
    *directories, name = path.split("/")
    current = os.dup(root)
    walked = []
    try:
        for part in directories:
            walked.append(part)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=current)
            try:
                following = os.open(part, _DIRECTORY, dir_fd=current)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise AssetError(
                        f"can't restore {path}: {'/'.join(walked)} in the target is a "
                        "symbolic link or a file; it is not followed"
                    ) from None
                raise
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current, name


def _write_all(
    store: BlobStore,
    entries: list[Entry],
    directory: int,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """Write every entry into the staging folder, a few files at once (as persisting
    stores them: the disk takes several writes at once faster than one by one)."""
    if len(entries) < 2:
        for index, entry in enumerate(entries):
            _write(store, entry, directory, str(index), on_bytes)
        return
    lock = threading.Lock()

    def counted(n: int) -> None:  # progress is counted from every thread
        if on_bytes is not None:
            with lock:
                on_bytes(n)

    pool = ThreadPoolExecutor(FILES_AT_ONCE, thread_name_prefix="coflux-restore")
    try:
        for _ in pool.map(
            lambda pair: _write(store, pair[1], directory, str(pair[0]), counted),
            enumerate(entries),
        ):
            pass
    finally:
        pool.shutdown(cancel_futures=True)


def _write(
    store: BlobStore,
    entry: Entry,
    directory: int,
    name: str,
    on_bytes: Callable[[int], None] | None,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(name, flags, 0o600, dir_fd=directory)
    try:
        for key in entry.blobs:
            try:
                for chunk in store.open_chunks(key):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    if on_bytes is not None:
                        on_bytes(len(chunk))
            except BlobError as e:
                raise AssetError(f"can't restore {entry.path}: {e}") from None
        os.fchmod(fd, entry.mode)
    except OSError as e:
        reason = "No space left on device" if e.errno == errno.ENOSPC else e.strerror
        raise AssetError(f"can't restore {entry.path}: {reason}") from None
    finally:
        os.close(fd)
