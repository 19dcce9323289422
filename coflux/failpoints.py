"""Named failpoints for fault tests: ``COFLUX_FAILPOINTS="sync.after_server_ack=exit"``.

Read once at import; ``hit(name)`` costs one dictionary check when unset.
Actions: ``exit`` ends the process at once (``os._exit(137)``, as a kill -9
would, with no clean-up).
"""

from __future__ import annotations

import os


def _parse(text: str) -> dict[str, str]:
    points = {}
    for item in text.split(";"):
        name, _, action = item.strip().partition("=")
        if name:
            points[name] = action or "exit"
    return points


_POINTS = _parse(os.environ.get("COFLUX_FAILPOINTS", ""))


def hit(name: str) -> None:
    if _POINTS and _POINTS.get(name) == "exit":
        os._exit(137)
