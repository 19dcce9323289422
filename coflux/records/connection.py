"""The agent connection's limits: its close codes and the largest message."""

from __future__ import annotations

#: The server heard nothing from the session for its agent timeout.
CLOSE_TIMED_OUT = 4408
#: A newer connection of the same session replaced this one.
CLOSE_REPLACED = 4409
#: The project's orchestrator moved to another server process (PostgreSQL
#: leases): reconnect, and be forwarded there.
CLOSE_MOVED = 4503
#: Other 44xx codes refuse the agent (a bad hello, an unknown project, a
#: revoked token): reconnecting can't help.
RECONNECTABLE_CLOSE_CODES = (CLOSE_TIMED_OUT, CLOSE_REPLACED, CLOSE_MOVED)
#: The largest JSON request body, and agent WebSocket message, a server accepts
#: (bytes); an agent never sends a larger one (it closes the connection with 1009).
MAX_MESSAGE_BYTES = 1024 * 1024
