"""The installed distributions behind imported modules, and their versions.

A target's code hash includes the version of every installed distribution
(``pip install`` package) whose code the target reaches, so upgrading one
re-executes what uses it. ``COFLUX_HASH_PACKAGES=0`` leaves versions out, for
code whose results don't depend on its dependencies' versions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys
from pathlib import Path

_OFF = ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether code hashes include the versions of installed distributions."""
    return os.environ.get("COFLUX_HASH_PACKAGES", "1").strip().lower() not in _OFF


@functools.cache
def version_of(module_name: str) -> str:
    """``name==version`` of the distribution providing a module ('' for the standard
    library, code that isn't installed, or when versions are left out)."""
    if not enabled():
        return ""
    top = module_name.partition(".")[0]
    found = _by_name(top) or _in_folder(top)
    if found is None:
        return ""
    return f"{found.metadata['Name']}=={found.version}"


def _by_name(top: str) -> importlib.metadata.Distribution | None:
    # Most distributions are named after their top-level package: a direct look-up.
    for name in dict.fromkeys((top, top.replace("_", "-"))):
        try:
            return importlib.metadata.distribution(name)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return None


def _in_folder(top: str) -> importlib.metadata.Distribution | None:
    """The distribution in the module's own folder that lists it (``yaml`` is PyYAML's);
    read there only, not across every installed distribution (that took 0.27 s)."""
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file)
    folder = path.parent.parent if path.name == "__init__.py" else path.parent
    for info in sorted(folder.glob("*.dist-info")):
        distribution = importlib.metadata.Distribution.at(info)
        names = (distribution.read_text("top_level.txt") or "").split()
        if not names:
            record = distribution.read_text("RECORD") or ""
            names = [line.split("/")[0].removesuffix(".py") for line in record.splitlines()]
        if top in names:
            return distribution
    return None
