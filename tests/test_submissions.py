"""Submissions under concurrency: idempotency keys and many clients at once (S10, S12a)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from conftest import Workspace, private_stack

FLOWS = """
    import coflux as cf

    @cf.task()
    def echo(x: int) -> int:
        return x

    @cf.workflow()
    def main(x: int) -> int:
        return echo(x)
"""


def body(x: int, key: str | None = None) -> dict:
    return {
        "environment": "production",
        "repository": "flows",
        "target": "main",
        "arguments": [{"format": "json", "size": len(str(x)), "data": x}],
        "idempotency_key": key,
    }


async def submit_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies))


def test_s12_concurrent_submits_with_one_idempotency_key_make_one_run(workspace: Workspace) -> None:
    """S12a: 20 concurrent submits with the same key -> one run, one execution."""
    workspace.write("flows.py", FLOWS)
    workspace.start_agent("flows.py")
    url = f"{workspace.server}/api/projects/{workspace.project}/runs"
    responses = asyncio.run(submit_all(url, [body(7, "same-key")] * 20))
    assert [r.status_code for r in responses] == [201] * 20
    assert len({r.json()["id"] for r in responses}) == 1
    run_id = responses[0].json()["id"]
    with workspace.client() as client:
        assert client.wait_for_run(run_id, timeout=20)["state"] == "succeeded"
        run = client.get_run(run_id)
        assert len(client.list_runs("production")) == 1
    assert [len(s["executions"]) for s in run["steps"]] == [1, 1]


def test_s10_a_hundred_concurrent_submits_all_complete(
    tmp_path: Path, database_url: str | None
) -> None:
    """S10: 100 submits at once -> 100 x 2xx, 100 distinct runs, all listed and
    completed; on SQLite, then on PostgreSQL."""
    with private_stack(tmp_path, database_url=database_url) as (server, workspace):
        workspace.write("flows.py", FLOWS)
        workspace.start_agent("flows.py", concurrency=8)
        url = f"{workspace.server}/api/projects/{workspace.project}/runs"
        responses = asyncio.run(submit_all(url, [body(i) for i in range(100)]))
        assert [r.status_code for r in responses] == [201] * 100
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 100
        with workspace.client() as client:
            for run_id in ids:
                assert client.wait_for_run(run_id, timeout=30)["state"] == "succeeded"
            listed = client.list_runs("production", limit=1000)
        assert {r["id"] for r in listed} == ids
        assert all(r["state"] == "succeeded" for r in listed)
        log = server.log_path.read_text()
        assert "database is locked" not in log and "Traceback" not in log
        # docs/reliability.md sets the target for the p99 submit latency is 1 s on two cores;
        # measured: 0.25 s (SQLite), 0.4 s (PostgreSQL). Twice the target fails.
        latencies = sorted(r.elapsed.total_seconds() for r in responses)
        assert latencies[98] < 2, latencies[-5:]
