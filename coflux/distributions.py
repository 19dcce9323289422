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

_OFF = ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether code hashes include the versions of installed distributions."""
    return os.environ.get("COFLUX_HASH_PACKAGES", "1").strip().lower() not in _OFF


@functools.cache
def _by_top_level() -> dict[str, list[str]]:
    # Read once per process: it walks every installed distribution's metadata.
    return importlib.metadata.packages_distributions()


@functools.cache
def version_of(module_name: str) -> str:
    """``name==version`` of the distributions providing a module ('' for the standard
    library, code that isn't installed, or when versions are left out)."""
    if not enabled():
        return ""
    top = module_name.partition(".")[0]
    found = []
    for distribution in sorted(set(_by_top_level().get(top, ()))):
        try:
            found.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ",".join(found)
