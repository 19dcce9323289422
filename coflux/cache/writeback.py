"""Starting a file's writeback without waiting for it: sync_file_range(2), where
the C library has it (Linux), loaded on first use; elsewhere nothing.

A blob store seals many blobs, then fsyncs them together (``BlobBatch``): with
their writeback already under way the fsyncs find the data on disk, and the
file system commits its journal once for the lot instead of once per blob.
"""

from __future__ import annotations

import ctypes

# sync_file_range(2) where the C library has it (Linux): loaded on first use.
_libc: ctypes.CDLL | None | bool = False
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing ``fd``'s dirty pages, without waiting; a
    hint only (the fsync that follows is the promise), so failure is ignored."""
    global _libc
    if _libc is False:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.sync_file_range.argtypes = [
                ctypes.c_int,
                ctypes.c_int64,
                ctypes.c_int64,
                ctypes.c_uint,
            ]
        except (OSError, AttributeError):
            _libc = None
    if isinstance(_libc, ctypes.CDLL):
        _libc.sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
