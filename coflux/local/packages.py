"""Installed packages as ``coflux dev`` sees them: a cheap listing that shows an upgrade.

Code hashes include the versions of the installed distributions a target
reaches (:mod:`coflux.identity.distributions`), so after ``pip install -U`` the dev
loop must reload for the new versions to count. Installing, upgrading or
removing a distribution renames its ``*.dist-info`` folder, so listing the
site folders' entries (one directory read each) is enough to notice.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: How often the site folders are listed (seconds).
POLL_INTERVAL = 1.0


def site_folders() -> list[Path]:
    """The folders on the import path that hold installed distributions."""
    found = []
    for entry in dict.fromkeys(sys.path):
        path = Path(entry or ".")
        if path.name in ("site-packages", "dist-packages") and path.is_dir():
            found.append(path)
    return found


def _listing(folders: list[Path]) -> frozenset[str]:
    names: set[str] = set()
    for folder in folders:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        names.update(
            f"{folder}/{name}" for name in entries if name.endswith((".dist-info", ".egg-info"))
        )
    return frozenset(names)


class PackageWatcher:
    """Says when the installed distributions changed since it last looked."""

    def __init__(self, folders: list[Path] | None = None) -> None:
        self.folders = site_folders() if folders is None else folders
        self._seen = _listing(self.folders)

    def changed(self) -> list[str]:
        """The distributions (``name-version``) added since the last call."""
        now = _listing(self.folders)
        if now == self._seen:
            return []
        added, self._seen = now - self._seen, now
        return sorted(Path(name).stem for name in added) or ["a removed distribution"]
