"""Named failpoints, for tests that inject a fault at an exact place.

``COFLUX_FAILPOINTS="put_result.before_commit=exit,submit.after_commit=exit"``
(``,`` or ``;`` between them) makes the process that reaches one of those
names act there:

- ``exit``: end the process at once (``os._exit(137)``, as ``kill -9`` would);
- ``drop``: :func:`hit` returns true, and the caller discards what it was
  handling, as if it never arrived; ``drop:N`` only the first N times;
- ``sleep:SECONDS``: pause there;
- ``raise``: raise ``RuntimeError`` there (an unexpected failure, as a bug would).

Unset (always, outside tests) a failpoint costs one check of an empty dict.
Failpoints in the code: ``submit.before_commit``, ``submit.after_commit``,
``put_result.before_commit``, ``put_result.after_commit``,
``started.before_commit`` (the server's orchestrator),
``blobs.before_batch_commit`` (a batch upload's blobs written and verified,
not yet fsynced and named), ``sync.after_server_ack``
and ``push.after_import`` (``coflux sync``: the server has applied an
operation or imported a run, not yet marked),
``sync.after_mark`` (marked, not yet reported) and
``execute.before_start`` (the agent, on receiving an ``execute``).
"""

from __future__ import annotations

import os
import sys
import time


def _parse(spec: str) -> dict[str, str]:
    points = {}
    for item in filter(None, (part.strip() for part in spec.replace(";", ",").split(","))):
        name, _, action = item.partition("=")
        points[name.strip()] = action.strip() or "exit"
    return points


_ACTIVE = _parse(os.environ.get("COFLUX_FAILPOINTS", ""))


def hit(name: str) -> bool:
    """Act on failpoint ``name`` if it is set; true means "drop what you handle"."""
    if not _ACTIVE:
        return False
    action = _ACTIVE.get(name)
    if action is None or action == "off":
        return False
    sys.stderr.write(f"failpoint {name}: {action}\n")
    sys.stderr.flush()
    if action == "exit":
        os._exit(137)
    if action == "raise":
        raise RuntimeError(f"failpoint {name}")
    if action.startswith("sleep:"):
        time.sleep(float(action.partition(":")[2]))
        return False
    if action.startswith("drop:"):
        left = int(action.partition(":")[2])
        _ACTIVE[name] = f"drop:{left - 1}" if left > 1 else "off"
        return left > 0
    return action == "drop"
