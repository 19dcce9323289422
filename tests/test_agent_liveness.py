"""An agent that is alive is never declared lost because the server was the
one not listening (issue 26: a 100,000-task fan-out lost its workflow to "the
agent running it was lost" while its agent was working).

The server's sweep expires a session silent for the agent timeout. After a
stall of the server (a loop stuck in one long pass, a long fsync, a process
not scheduled on a loaded machine), the agent's heartbeats sent meanwhile
wait unread in the socket, and the overdue sweep runs before they are read:
the server counted its own deafness as the agent's silence.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conftest import private_stack, wait_until

FLOWS = """
import coflux as cf

@cf.task()
def double(x: int) -> int:
    return 2 * x

@cf.workflow()
def twice(x: int) -> int:
    return double(x)
"""


def _unread_bytes(port: int) -> int:
    """Bytes received by the server's established connections on ``port`` and
    not yet read by it (``rx_queue`` in ``/proc/net/tcp``)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            total += int(fields[4].split(":")[1], 16)
    return total


def test_an_idle_agent_heard_through_a_server_stall_keeps_its_session(tmp_path: Path) -> None:
    """The server is frozen (SIGSTOP) for over twice its 1 s agent timeout while
    the agent's heartbeats pile up unread in its socket; resumed, it reads them
    and keeps the session: no time-out, no reconnection, and work still runs."""
    timeout = 1.0
    with private_stack(tmp_path, agent_timeout=timeout) as (server, ws):
        ws.write("flows.py", FLOWS)
        ws.start_agent("flows.py")
        with ws.client() as client:
            [agent] = client.list_agents()
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            # The agent keeps talking (its heartbeats wait in the socket) for
            # longer than the server would allow it to be silent.
            wait_until(
                lambda: (
                    time.monotonic() - frozen > 2.5 * timeout and _unread_bytes(server.port) > 0
                ),
                timeout=10,
            )
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        wait_until(lambda: _unread_bytes(server.port) == 0)
        with ws.client() as client:
            # Heard again since the stall: its frames were read.
            wait_until(lambda: any(a["last_seen_seconds"] < timeout for a in client.list_agents()))
            assert [a["session_id"] for a in client.list_agents()] == [agent["session_id"]]
            submitted = ws.cli_json("submit", "flows.py", "twice", "21")
            final = client.wait_for_run(submitted["id"], timeout=20)
            run = client.get_run(submitted["id"])
        assert final["state"] == "succeeded"
        assert run["steps"][0]["executions"][-1]["value"]["data"] == 42
        assert server.log_path.read_text().count("timed out") == 0
        assert ws.agent_log().count("connected to") == 1
