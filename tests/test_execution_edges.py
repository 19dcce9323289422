"""Issue 17, the execution side: what an execution started, said or printed is
never lost and never runs twice at once (scenarios S34-S39 of docs/reliability.md).

Each test injects its fault for real: a workflow that submits and returns, a
1.2 MB log message, an error too large for the connection, ``kill -9`` of an
agent's PID alone while its task runs ``sh``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from conftest import Workspace, private_stack, wait_until

FIRE_AND_FORGET = """
    import os
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task()
    def step(i: int) -> int:
        return i * 2

    @cf.task()
    def gated(gate: str) -> str:
        Path(gate + ".started").touch()
        while not Path(gate).exists():
            time.sleep(0.01)
        return "opened"

    @cf.task()
    def broken() -> int:
        raise ValueError("a background step failed")

    @cf.workflow()
    def fire(n: int) -> str:
        for i in range(n):
            step.submit(i)
        return "submitted"

    @cf.workflow()
    def fire_gated(gate: str) -> str:
        gated.submit(gate)
        return "returned first"

    @cf.workflow()
    def fire_then_fail(n: int) -> str:
        for i in range(n):
            step.submit(i)
        raise RuntimeError("failed after submitting")

    @cf.task()
    def size(data: str) -> int:
        return len(data)

    @cf.task()
    def submit_and_die() -> int:
        # The argument is a blob the agent uploads before it sends the call.
        size.submit("D" * 8_000_000)
        os._exit(3)

    @cf.workflow()
    def crash_after_submitting() -> str:
        try:
            submit_and_die()
        except cf.ExecutionError as e:
            return str(e)
        return "no error"

    @cf.workflow()
    def fire_broken() -> str:
        broken.submit()
        return "returned first"
"""


def steps_of(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(target, latest state) of each step, in order."""
    return [(s["target"].split(":")[1], s["executions"][-1]["state"]) for s in run["steps"]]


# --- S34: fire-and-forget submissions ------------------------------------------


def test_s34_fire_and_forget_submissions_all_become_steps(workspace: Workspace) -> None:
    workspace.write("flows.py", FIRE_AND_FORGET)
    workspace.start_agent("flows.py")
    with workspace.client() as client:
        for _ in range(3):  # before the fix: no step at all, three times of three
            run_id = client.submit("production", "flows", "fire", [_json(4)])["id"]
            assert client.wait_for_run(run_id, timeout=30)["state"] == "succeeded"
            run = client.get_run(run_id)
            assert steps_of(run) == [("fire", "succeeded")] + [("step", "succeeded")] * 4
            values = sorted(s["executions"][-1]["value"]["data"] for s in run["steps"][1:])
            assert values == [0, 2, 4, 6]


def test_s34_submissions_before_a_failure_are_kept(workspace: Workspace) -> None:
    """The outcome waits for the submissions whatever it is: a workflow that
    submits and then raises has its steps, and they run."""
    workspace.write("flows.py", FIRE_AND_FORGET)
    workspace.start_agent("flows.py")
    result = workspace.cli("submit", "flows.py", "fire_then_fail", "3", "--wait", "--json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["state"] == "failed"
    assert [(s["target"], s["state"]) for s in document["steps"]] == [
        ("flows:fire_then_fail", "failed")
    ] + [("flows:step", "succeeded")] * 3
    assert [s["executions"][0]["result"] for s in document["steps"][1:]] == [0, 2, 4]


def test_s34_a_submission_outlives_a_crash_right_after_it(workspace: Workspace) -> None:
    """The execution process dies while the agent still uploads its call's
    argument: the agent reports the crash only after it has sent the call."""
    workspace.write("flows.py", FIRE_AND_FORGET)
    workspace.start_agent("flows.py")
    document = workspace.cli_json("submit", "flows.py", "crash_after_submitting", "--wait")
    assert document["result"] == "process exited with code 3"
    assert [(s["target"], s["state"]) for s in document["steps"]] == [
        ("flows:crash_after_submitting", "succeeded"),
        ("flows:submit_and_die", "failed"),
        ("flows:size", "succeeded"),
    ]
    assert document["steps"][2]["executions"][0]["result"] == 8_000_000


def test_s34_fire_and_forget_on_the_embedded_default(tmp_path: Path) -> None:
    """`coflux run` with no server configured: every submitted step runs before it exits."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "flows.py").write_text(textwrap.dedent(FIRE_AND_FORGET))
    for _ in range(3):  # before the fix: 0 to 3 of the 4 steps
        result = embedded(tmp_path, "run", "flows.py", "fire", "4", "--json")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["state"] == "succeeded"
        assert document["result"] == "submitted"
        assert [(s["target"], s["state"]) for s in document["steps"]] == [
            ("flows:fire", "succeeded")
        ] + [("flows:step", "succeeded")] * 4


# --- S35: a run is running while any of its steps is ---------------------------


def test_s35_a_run_is_running_until_its_last_step_ends(workspace: Workspace) -> None:
    workspace.write("flows.py", FIRE_AND_FORGET)
    workspace.start_agent("flows.py")
    gate = workspace.root / "gate"
    waiting = subprocess.Popen(
        [sys.executable, "-m", "coflux", "submit", "flows.py", "fire_gated", str(gate)]
        + ["--wait", "--json"],
        cwd=workspace.root,
        env=workspace.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with workspace.client() as client:
        wait_until(lambda: Path(f"{gate}.started").exists(), timeout=20)
        run_id = client.list_runs("production")[0]["id"]

        def initial_finished() -> dict[str, Any] | None:
            run = client.get_run(run_id)
            return run if run["steps"][0]["executions"][-1]["state"] == "succeeded" else None

        run = wait_until(initial_finished)
        # The initial step has returned; the step it submitted still runs.
        assert steps_of(run) == [("fire_gated", "succeeded"), ("gated", "assigned")]
        assert run["state"] == "running"
        assert client.list_runs("production")[0]["state"] == "running"
        assert client.wait_for_run(run_id, timeout=0.3)["step_finished"] is False
        assert waiting.poll() is None
        gate.touch()
        out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    document = json.loads(out)
    # --wait returned after the last step, not the first, and the result is the initial step's.
    assert document["state"] == "succeeded"
    assert document["result"] == "returned first"
    assert [(s["target"], s["state"]) for s in document["steps"]] == [
        ("flows:fire_gated", "succeeded"),
        ("flows:gated", "succeeded"),
    ]
    assert document["steps"][1]["executions"][-1]["result"] == "opened"


def test_s35_the_initial_steps_outcome_stays_the_runs(workspace: Workspace) -> None:
    """A background step that fails doesn't change the run's result, and the run
    ends once it has."""
    workspace.write("flows.py", FIRE_AND_FORGET)
    workspace.start_agent("flows.py")
    document = workspace.cli_json("submit", "flows.py", "fire_broken", "--wait")
    assert document["state"] == "succeeded"
    assert document["result"] == "returned first"
    assert [(s["target"], s["state"]) for s in document["steps"]] == [
        ("flows:fire_broken", "succeeded"),
        ("flows:broken", "failed"),
    ]
    assert document["steps"][1]["executions"][0]["error"]["message"] == "a background step failed"


# --- S36, S37: no message wedges a connection -----------------------------------

LOUD = """
    import coflux as cf

    @cf.task()
    def loud() -> str:
        cf.log_info("{s}", s="M" * 1_200_000)
        print("P" * 1_200_000)
        return "said"

    @cf.task()
    def quiet() -> str:
        return "fine"

    @cf.task()
    def count(items: list) -> int:
        return len(items)

    @cf.task()
    def huge_error() -> str:
        raise ValueError("E" * 2_000_000)

    @cf.task()
    def huge_call() -> int:
        # 100,000 references to one execution: the call's message is 1.8 MB
        # (references travel in it, whatever the size of the value's blob).
        done = quiet.submit()
        return count.submit([done] * 100_000).result()

    @cf.task()
    def huge_forgotten() -> int:
        done = quiet.submit()
        count.submit([done] * 100_000)  # never looked at: the refusal fails the task
        return 1

    @cf.task()
    def huge_result() -> list:
        done = quiet.submit()
        return [done] * 100_000

    @cf.workflow()
    def shout() -> str:
        return loud()

    @cf.workflow()
    def hello() -> str:
        return quiet()

    @cf.workflow()
    def oversized(kind: str) -> str:
        task = {
            "error": huge_error,
            "call": huge_call,
            "forgotten": huge_forgotten,
            "result": huge_result,
        }[kind]
        try:
            task()
        except Exception as e:
            return f"{type(e).__name__}: {str(e)[:140]}"
        return "no error"
"""


def test_s36_a_huge_log_message_is_truncated_and_the_agent_serves_on(
    workspace: Workspace,
) -> None:
    workspace.write("flows.py", LOUD)
    workspace.start_agent("flows.py")
    with workspace.client() as client:
        run_id = client.submit("production", "flows", "shout", [])["id"]
        # Before the fix the agent's connection was closed (1009) and the
        # message re-sent every 5 s: the run stayed running.
        assert client.wait_for_run(run_id, timeout=30)["state"] == "succeeded"
        logs = client.get_logs(run_id)
        [message] = [m for m in logs if m["template"] == "{s}"]
        said = message["values"]["s"]
        assert said.startswith("M" * 60_000)
        assert said.endswith("… [coflux: 1136000 bytes truncated]")
        assert len(said) == 64_000 + len("… [coflux: 1136000 bytes truncated]")
        # A printed line that long is kept whole, in pieces of 64 KiB.
        printed = [m["template"] for m in logs if m["level"] == "stdout"]
        assert "".join(printed) == "P" * 1_200_000
        assert max(len(piece) for piece in printed) == 64 * 1024
        # The same agent runs the next run at once.
        run_id = client.submit("production", "flows", "hello", [])["id"]
        assert client.wait_for_run(run_id, timeout=10)["state"] == "succeeded"
    assert "not connected" not in workspace.agent_log()


def test_s37_a_message_too_large_for_the_connection_fails_its_execution(
    workspace: Workspace,
) -> None:
    workspace.write("flows.py", LOUD)
    workspace.start_agent("flows.py")
    limit = "over the server's limit of 1048576 bytes"
    with workspace.client() as client:
        outcomes = {}
        for kind in ("error", "call", "forgotten", "result"):
            run_id = client.submit("production", "flows", "oversized", [_json(kind)])["id"]
            assert client.wait_for_run(run_id, timeout=30)["state"] == "succeeded", kind
            run = client.get_run(run_id)
            outcomes[kind] = run["steps"][0]["executions"][-1]["value"]["data"]
            failed = [e["error"] for s in run["steps"] for e in s["executions"] if e["error"]]
            assert len(failed) == 1, (kind, failed)
            outcomes[kind + " stored"] = failed[0]
        # An error too large to send is sent cut, with its type.
        assert outcomes["error"].startswith("ValueError: EEEE")
        stored = outcomes["error stored"]
        assert stored["type"] == "ValueError"
        assert stored["message"].endswith(" bytes truncated]")
        assert stored["message"].startswith("E" * 1000)
        # A call or a result too large fails the execution that made it, saying why.
        assert outcomes["call"].startswith("CofluxError: the call of count is ")
        assert limit in outcomes["call stored"]["message"]
        assert outcomes["forgotten"].startswith("CofluxError: submitting count failed: the call")
        assert limit in outcomes["forgotten stored"]["message"]
        assert outcomes["result"].startswith("ExecutionError: ")
        assert outcomes["result stored"]["type"] == "coflux.ExecutionError"
        assert limit in outcomes["result stored"]["message"]
        run_id = client.submit("production", "flows", "hello", [])["id"]
        assert client.wait_for_run(run_id, timeout=10)["state"] == "succeeded"
    assert "not connected" not in workspace.agent_log()


# --- S38, S39: an attempt's processes die with it -------------------------------

SHELL_TASKS = """
    import json
    import os
    import subprocess
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task(retries=1)
    def shell(journal: str) -> str:
        path = Path(journal)
        attempt = len(list(path.glob("start-*"))) + 1
        (path / f"start-{attempt}").write_text(json.dumps({"t": time.time(), "pid": os.getpid()}))
        if attempt == 1:
            # One process that leaves the task's process group (a session of its
            # own), and one in it, in the foreground, writing ticks.
            subprocess.Popen(
                ["sh", "-c", f"echo $$ > {path}/session-pid; exec sleep 300"],
                start_new_session=True,
            )
            ticks = f"while :; do echo tick >> {path}/ticks; sleep 0.02; done"
            script = f"echo $$ > {path}/sh-pid; {ticks}"
            subprocess.run(["sh", "-c", script])
        return f"attempt {attempt}"
"""

SHELL_WORKFLOWS = """
    import coflux as cf
    from tasks import shell

    @cf.workflow()
    def run_shell(journal: str) -> str:
        return shell(journal)
"""


ESCAPING = """
    import subprocess
    import time
    from pathlib import Path
    import coflux as cf

    @cf.task()
    def escaping(journal: str) -> str:
        subprocess.Popen(
            ["sh", "-c", f"echo $$ > {journal}/session-pid; exec sleep 300"],
            start_new_session=True,
        )
        time.sleep(300)
        return "never"

    @cf.workflow()
    def run_escaping(journal: str) -> str:
        return escaping(journal)

    @cf.task()
    def killed(journal: str) -> str:
        import os, signal
        subprocess.Popen(["sh", "-c", f"echo $$ > {journal}/group-pid; exec sleep 300"])
        pid = Path(journal, "group-pid")
        while not (pid.exists() and pid.read_text().endswith("\\n")):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        return "never"

    @cf.workflow()
    def run_killed(journal: str) -> str:
        try:
            return killed(journal)
        except cf.ExecutionError as e:
            return str(e)
"""


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for its parent."""
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_s38_killing_the_agent_alone_kills_its_tasks_processes_before_the_retry(
    tmp_path: Path,
) -> None:
    """``kill -9`` of the agent's PID only (as the OOM killer does) while its task
    runs ``sh``: both of the task's processes are gone before the retry starts
    on another agent. Before the fix, ``sh`` ran on, overlapping the retry."""
    journal = tmp_path / "journal"
    journal.mkdir()
    with private_stack(tmp_path, agent_timeout=2) as (server, ws):
        ws.write("tasks.py", SHELL_TASKS)
        ws.write("wf.py", SHELL_WORKFLOWS)
        ws.start_agent("wf.py")
        first = ws.start_agent("tasks.py")
        with ws.client() as client:
            run_id = client.submit("production", "wf", "run_shell", [_json(str(journal))])["id"]
            wait_until(lambda: (journal / "ticks").exists() and (journal / "session-pid").exists())
            sh = int((journal / "sh-pid").read_text())
            session = int((journal / "session-pid").read_text())
            assert not gone(sh) and not gone(session)
            ws.start_agent("tasks.py")  # where the retry can go
            os.kill(first.pid, signal.SIGKILL)
            killed = time.time()
            wait_until(lambda: gone(sh) and gone(session), timeout=5, interval=0.005)
            dead = time.time()
            ticks = len((journal / "ticks").read_text().splitlines())
            assert client.wait_for_run(run_id, timeout=30)["state"] == "succeeded"
            run = client.get_run(run_id)
        retry = json.loads((journal / "start-2").read_text())
        assert run["steps"][0]["executions"][-1]["value"]["data"] == "attempt 2"
        assert [e["state"] for e in run["steps"][1]["executions"]] == ["abandoned", "succeeded"]
        # No overlap: the first attempt's processes died within 0.5 s of the
        # agent, before the retry started (after the 2 s agent timeout).
        assert dead - killed < 0.5
        assert dead < retry["t"]
        assert len((journal / "ticks").read_text().splitlines()) == ticks


def test_s39_cancelling_kills_a_process_that_left_the_tasks_group(
    workspace: Workspace,
) -> None:
    """A task's process in a session of its own (``setsid``) is out of reach of
    a kill of the task's process group: it is killed as a descendant."""
    workspace.write("flows.py", ESCAPING)
    workspace.start_agent("flows.py")
    journal = workspace.root / "journal"
    journal.mkdir()
    submitted = workspace.cli_json("submit", "flows.py", "run_escaping", str(journal))
    wait_until(lambda: (journal / "session-pid").exists(), timeout=20)
    escaped = int((journal / "session-pid").read_text())
    assert not gone(escaped)
    workspace.cli("cancel", submitted["id"], check=True)
    wait_until(lambda: gone(escaped), timeout=10, interval=0.005)
    with workspace.client() as client:
        run = client.get_run(submitted["id"])
    assert [e["state"] for s in run["steps"] for e in s["executions"]] == ["cancelled"] * 2


def test_s39_an_execution_process_killed_outright_takes_its_group_down(
    workspace: Workspace,
) -> None:
    """The execution process itself is killed with SIGKILL (the OOM killer picks
    the process holding the memory): its agent kills what it started."""
    workspace.write("flows.py", ESCAPING)
    workspace.start_agent("flows.py")
    journal = workspace.root / "journal"
    journal.mkdir()
    document = workspace.cli_json("submit", "flows.py", "run_killed", str(journal), "--wait")
    assert document["result"] == "killed by signal 9"
    left = int((journal / "group-pid").read_text())
    wait_until(lambda: gone(left), timeout=5, interval=0.005)


# --- helpers --------------------------------------------------------------------


def _json(value: Any) -> dict[str, Any]:
    return {"format": "json", "size": 0, "data": value}


def embedded(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with no server configured (the embedded default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFLUX_")}
    return subprocess.run(
        [sys.executable, "-m", "coflux", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
