"""Workspace operations (``coflux.local.operations``) called directly, on a real server.

Each operation, with the server up, is done and answers what the server said;
with the server down it is queued, and the entry replays (through the same
request) to exactly one effect on the server, even when it is sent twice. The
mirror's fallback is the one function both read commands use.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Workspace, private_stack

from coflux.cache import BlobStore
from coflux.errors import ServerUnreachable
from coflux.local import mirror, operations, outbox
from coflux.local.branches import with_environment
from coflux.local.config import Config, load_config
from coflux.local.config import Workspace as Settings

# A module name of its own: the operations import it in the test's process.
MODULE = "ops_flows_s75"
FLOWS = """
    import coflux as cf

    @cf.task()
    def double(x: int) -> int:
        return x * 2

    @cf.workflow()
    def twice(x: int) -> int:
        return double(x)
"""


def settings(ws: Workspace, derive: bool = True) -> Config:
    loaded = load_config(
        server=ws.server, project=ws.project, environment="production", cwd=ws.root
    )
    return with_environment(loaded) if derive else loaded


def workspace_of(ws: Workspace) -> Settings:
    found = settings(ws)
    assert isinstance(found, Settings)
    return found


def url(ws: Workspace, run_id: str) -> str:
    return f"{ws.server}/projects/{ws.project}/runs/{run_id}?env=production"


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's machine: the suite may run in CI, where registrations never queue."""
    monkeypatch.delenv("CI", raising=False)


def test_s75_each_operation_with_the_server_up_is_done(tmp_path: Path, no_ci: None) -> None:
    with private_stack(tmp_path) as (_, ws):
        module = str(ws.write(f"{MODULE}.py", FLOWS))
        cfg, plain = workspace_of(ws), settings(ws, derive=False)

        assert operations.register(cfg, [module], None, queue=True) == operations.Done(
            {MODULE: ["double", "twice"]}
        )
        submitted = operations.submit(cfg, MODULE, "twice", ["1"], queue=True)
        assert isinstance(submitted, operations.Done)
        run_id = submitted.answer["id"]
        assert submitted.answer == {"id": run_id, "url": url(ws, run_id)}
        assert operations.rerun(cfg, run_id, 1, False, queue=True) == operations.Done(
            {"execution_id": f"{run_id}:1:2", "url": url(ws, run_id)}
        )
        # No agent: both executions are queued, and both are cancelled.
        assert operations.cancel(plain, run_id, None, queue=True) == operations.Done(
            {"cancelled": 2}
        )
        assert operations.create_environment(
            plain, "staging", "production", queue=True
        ) == operations.Done({"name": "staging", "base": "production"})
        assert outbox.pending(plain) == []

        # Following the answer with the server: losing it then is an error, never
        # a queued second submission.
        def lose_it(client: object, answer: dict[str, str]) -> None:
            raise ServerUnreachable("the connection dropped while following")

        with pytest.raises(ServerUnreachable, match="while following"):
            operations.submit(cfg, MODULE, "twice", ["2"], queue=True, then=lose_it)
        assert outbox.pending(plain) == []
        with ws.client() as client:
            assert len(client.list_runs("production", 10)) == 2


def test_s76_offline_each_operation_is_queued_and_replays_to_one_effect(
    tmp_path: Path, no_ci: None
) -> None:
    with private_stack(tmp_path) as (server, ws):
        module = str(ws.write(f"{MODULE}.py", FLOWS))
        cfg, plain = workspace_of(ws), settings(ws, derive=False)
        assert isinstance(operations.register(cfg, [module], None, queue=True), operations.Done)
        first = operations.submit(cfg, MODULE, "twice", ["1"], queue=True)
        assert isinstance(first, operations.Done)
        run_id = first.answer["id"]
        server.stop()

        # Not allowed to queue: the server's absence is the error.
        for refused in (
            lambda: operations.submit(cfg, MODULE, "twice", ["2"], queue=False),
            lambda: operations.rerun(cfg, run_id, 1, False, queue=False),
            lambda: operations.cancel(plain, run_id, None, queue=False),
            lambda: operations.create_environment(plain, "staging", None, queue=False),
            lambda: operations.register(cfg, [module], None, queue=False),
        ):
            with pytest.raises(ServerUnreachable):
                refused()
        assert outbox.pending(plain) == []

        queued = [
            operations.register(cfg, [module], {"commit": None, "dirty": True}, queue=True),
            operations.submit(cfg, MODULE, "twice", ["2"], queue=True),
            operations.rerun(cfg, run_id, 1, True, queue=True),
            operations.cancel(plain, run_id, 1, queue=True),
            operations.create_environment(plain, "staging", "production", queue=True),
            # Too big to travel inline: its argument waits in the local store...
            operations.submit(cfg, MODULE, "twice", ["x" * 300], queue=True),
        ]
        assert all(isinstance(q, operations.Queued) for q in queued)
        entries = [e for q in queued if isinstance(q, operations.Queued) for e in q.entries]
        assert [e.describe() for e in entries] == [
            f"register {MODULE} in production",
            f"submit {MODULE}:twice in production",
            f"rerun {run_id}:1 in production",
            f"cancel {run_id}:1",
            "create environment staging",
            f"submit {MODULE}:twice in production",
        ]
        assert outbox.pending(plain) == entries
        # ...and is lost from it before the sync: that submission can never be made.
        store = BlobStore(cfg.data_dir / "cas")
        blob = entries[5].payload["arguments"][0]["blob"]
        store.path(blob).unlink()

        # The mirror's fallback: nothing mirrored is the server's absence again.
        def fetch() -> list[dict[str, object]]:
            with ws.client() as client:
                return client.list_runs("production", 10)

        with pytest.raises(ServerUnreachable):
            mirror.or_mirrored(fetch, lambda: None)
        kept = mirror.or_mirrored(fetch, lambda: ([{"id": run_id}], 12.5))
        assert kept == mirror.Read([{"id": run_id}], 12.5)

        server.start()
        assert mirror.or_mirrored(fetch, lambda: None).mirrored_at is None
        with ws.client() as client:
            outcomes = outbox.replay(client, plain)
            assert [(o.status, o.error) for o in outcomes] == [("sent", None)] * 5 + [
                (
                    "refused",
                    f"argument blob {blob} is gone from {store.root} and the server lacks "
                    "it; submit the run again",
                )
            ]
            results = [o.result for o in outcomes]
            assert results[0] == {"repository": MODULE}
            second = results[1]
            assert second is not None
            assert second == {"id": second["id"], "url": url(ws, second["id"])}
            assert results[2] == {"execution_id": f"{run_id}:1:2", "url": url(ws, run_id)}
            # Only what was made by the time it was asked: 1:1, not the re-run's 1:2.
            assert results[3] == {"cancelled": 1}
            assert results[4] == {"name": "staging", "base": "production"}
            assert outbox.pending(plain) == []

            # A sync that died after the server applied each, sent again: the
            # same answers, and nothing more on the server.
            again = [operations.send_queued(client, plain, e) for e in entries[:5]]
            assert again[:4] == results[:4]
            assert again[4] == {"name": "staging", "existed": True}

            runs = client.list_runs("production", 10)
            assert sorted(r["id"] for r in runs) == sorted([run_id, second["id"]])
            executions = client.get_run(run_id)["steps"][0]["executions"]
            assert [(e["id"], e["state"]) for e in executions] == [
                (f"{run_id}:1:1", "cancelled"),
                (f"{run_id}:1:2", "queued"),
            ]
            assert [(e["name"], e["base"]) for e in client.list_environments()] == [
                ("production", None),
                ("staging", "production"),
            ]
            manifests = client.list_manifests("production")
            assert [(m["repository"], m["targets"], m["dirty"]) for m in manifests] == [
                (MODULE, ["double", "twice"], True)
            ]
