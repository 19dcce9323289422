"""The concurrency page: submit and result, wait=, passing and returning
executions, cancelling, and a task calling a workflow (a run of its own)."""

from __future__ import annotations

import json

from .conftest import Mode, executions, seconds, step

PROGRAMS = ["concurrency"]


def test_submitted_tasks_run_in_parallel(mode: Mode) -> None:
    run = mode.run("concurrency", "in_parallel", 7, 9)
    assert run["state"] == "succeeded"
    assert run["result"] == {"user": 7, "product": 9}
    user = step(run, "concurrency:load_user")["executions"][0]
    product = step(run, "concurrency:load_product")["executions"][0]
    # Each started before the other finished.
    assert seconds(user["started_at"]) < seconds(product["finished_at"])
    assert seconds(product["started_at"]) < seconds(user["finished_at"])


def test_calling_is_submitting_and_waiting(mode: Mode) -> None:
    run = mode.run("concurrency", "called_or_submitted", 1, 2)
    assert run["result"] == [{"a": 1, "b": 2}, {"a": 1, "b": 2}]


def test_executions_passed_and_returned_are_references(mode: Mode) -> None:
    run = mode.run("concurrency", "wired", 3, 4)
    order = step(run, "concurrency:create_order")
    assert order["state"] == "succeeded"
    assert order["executions"][0]["result"] == {"user": 3, "product": 4}
    # The workflow returned the execution itself: a reference to the order's result.
    assert run["result"] == {
        "$type": "coflux.Execution",
        "repr": f"Execution({order['executions'][0]['id']!r})",
        "id": order["executions"][0]["id"],
    }


def test_wait_true_and_wait_as_a_set_of_names(mode: Mode) -> None:
    run = mode.run("concurrency", "waiting", 1, 2)
    assert run["result"] == [{"user": 1, "product": 2}, {"user": 2, "product": 3}]
    users = executions(run, "concurrency:load_user")
    products = executions(run, "concurrency:load_product")
    every = executions(run, "concurrency:create_order_all")[0]
    assert seconds(every["started_at"]) >= seconds(users[0]["finished_at"])
    assert seconds(every["started_at"]) >= seconds(products[0]["finished_at"])
    only_product = executions(run, "concurrency:create_order_product")[0]
    assert seconds(only_product["started_at"]) >= seconds(products[1]["finished_at"])


def test_cancelling_a_submitted_workflow(mode: Mode) -> None:
    run = mode.run("concurrency", "cancels_another")
    cancelled = mode.show(run["result"].split(":")[0])
    assert cancelled["workflow"] == "concurrency:slow_workflow"
    assert cancelled["state"] == "cancelled"
    assert [s["state"] for s in cancelled["steps"]] == ["cancelled"]


def test_a_task_calling_a_workflow_starts_a_run_of_its_own(mode: Mode) -> None:
    run = mode.run("concurrency", "spawning", "Ada")
    assert run["result"] == "Hello, Ada"
    caller = step(run, "concurrency:starts_a_workflow")["executions"][0]
    listed = mode.cli("runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    candidates = [r["id"] for r in listing if r["workflow"] == "concurrency:greet"]
    shown = [mode.show(c) for c in candidates]
    spawned = next(d for d in shown if d["steps"][0]["parent"] == caller["id"])
    spawned_run = spawned["id"]
    assert spawned_run != run["id"]
    assert spawned["state"] == "succeeded" and spawned["result"] == "Hello, Ada"
    # Its text view shows its step too (under the execution that spawned it).
    text = mode.cli("runs", "show", spawned_run)
    assert text.returncode == 0, text.stderr
    assert f"spawned by {caller['id']}" in text.stdout
    assert f"{spawned_run}:1:1  concurrency:greet  succeeded" in text.stdout
