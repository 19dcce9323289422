"""Blobs on object storage (issue 23), against a real SeaweedFS (tests/seaweedfs.py).

A server with ``--blob-store s3://BUCKET/PREFIX`` keeps every blob in the
bucket; agents and the CLI move the bytes directly with presigned URLs (they
are given no AWS credentials: only the server has them). Two workspaces on
one project stand for two machines, each with its own local store.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, Workspace, free_port, new_workspace

from coflux.remote.server.blobstores.s3 import MULTIPART_SIZE

PRODUCER = """
    import os
    import random
    import coflux as cf

    SIZES = {"empty": 0, "one": 1, "under": UNDER, "over": OVER}

    @cf.task()
    def make(seed: int) -> list:
        os.makedirs("out", exist_ok=True)
        for name, size in SIZES.items():
            with open(f"out/{name}.bin", "wb") as f:
                f.write(random.Random(f"{seed}{name}").randbytes(size))
        return [cf.persist_asset("out"), "x" * (300_000 + seed)]

    @cf.workflow()
    def produce(seed: int) -> list:
        return make.submit(seed).result()
""".replace("UNDER", str(MULTIPART_SIZE - 1)).replace("OVER", str(MULTIPART_SIZE + 1))


def _rchar(server: ServerProcess) -> int:
    """Bytes the server process has read from files and sockets so far."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@contextmanager
def s3_server(
    tmp_path: Path,
    seaweedfs: Any,
    bucket: str | None = None,
    args: tuple[str, ...] = (),
    **kwargs: Any,
) -> Iterator[ServerProcess]:
    bucket = bucket or seaweedfs.new_bucket()
    server = ServerProcess(
        tmp_path / f"data-{free_port()}",
        args=("--blob-store", f"s3://{bucket}/coflux", *args),
        **kwargs,
    )
    server.env = dict(seaweedfs.environ)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _expected(seed: int) -> dict[str, str]:
    import random

    sizes = {"empty": 0, "one": 1, "under": MULTIPART_SIZE - 1, "over": MULTIPART_SIZE + 1}
    return {
        f"{name}.bin": hashlib.sha256(random.Random(f"{seed}{name}").randbytes(n)).hexdigest()
        for name, n in sorted(sizes.items())
    }


def _objects(seaweedfs: Any, bucket: str, prefix: str) -> dict[str, int]:
    listed = seaweedfs.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def test_s50_every_size_class_round_trips_through_object_storage_directly(
    tmp_path: Path, seaweedfs: Any
) -> None:
    bucket = seaweedfs.new_bucket()
    with s3_server(tmp_path, seaweedfs, bucket) as server:
        ws = new_workspace(server, tmp_path / "producer")
        try:
            ws.write("producer.py", PRODUCER)
            ws.start_agent("producer.py")
            before = _rchar(server)
            run = ws.cli_json("submit", "producer.py", "produce", "7", "--wait")
            uploaded_through_server = _rchar(server) - before
            assert run["state"] == "succeeded", (run, ws.agent_log()[-3000:])
            asset = run["result"][0]["ref"]
            other = Workspace(tmp_path / "consumer", server.url, ws.project)
            other.root.mkdir()
            before = _rchar(server)
            restored = other.cli_json("assets", "restore", asset, "--to", "copy")
            downloaded_through_server = _rchar(server) - before
            shown = other.cli_json("runs", "show", run["id"])
        finally:
            ws.stop_agents()
    assert _digests(other.root / "copy") == _expected(7)
    assert restored["files"] == 4 and restored["from"] == "server"
    assert shown["result"][1] == "x" * 300_007
    objects = _objects(seaweedfs, bucket, f"coflux/{ws.project}/")
    sizes = sorted(objects.values())
    # Four files (the empty one is no blob), the manifest and the 300 KB result.
    assert [n for n in sizes if n > 1000][-2:] == [MULTIPART_SIZE - 1, MULTIPART_SIZE + 1]
    assert 1 in sizes and len(objects) == 5
    # The 32 MiB went directly between the machines and the bucket.
    assert uploaded_through_server < 4 * 1024 * 1024, uploaded_through_server
    assert downloaded_through_server < 4 * 1024 * 1024, downloaded_through_server


#: S51's large file, in MiB: 256 in the suite; the issue's 2 GiB with
#: COFLUX_TEST_BIG_MIB=2048 (docs/reliability.md has the figures of that run).
BIG_MIB = int(os.environ.get("COFLUX_TEST_BIG_MIB", "256"))


@pytest.mark.timeout(max(300, BIG_MIB // 2))
def test_s51_a_large_file_is_streamed_in_bounded_memory(tmp_path: Path, seaweedfs: Any) -> None:
    """BIG_MIB in 32 MiB pieces, each in two parts, persisted by an agent and
    restored by a CLI whose peak memory grows far less than the file does:
    measured against restoring a 1 MiB file the same way (a fixed bound was at
    the mercy of the allocator's arenas, 107 to 309 MiB)."""
    import random
    import subprocess
    import sys

    def peak_of_restoring(run: dict[str, Any], name: str) -> int:
        other = Workspace(tmp_path / f"consumer-{name}", server.url, ws.project)
        other.root.mkdir()
        restore = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource, sys, runpy; sys.argv = sys.argv[1:];"
                "\ntry:\n runpy.run_module('coflux', run_name='__main__')"
                "\nfinally:\n print('PEAK', resource.getrusage(resource.RUSAGE_SELF)"
                ".ru_maxrss, file=sys.stderr)",
                "coflux",
                "assets",
                "restore",
                run["result"]["ref"],
                "--to",
                "copy",
                "--json",
            ],
            cwd=other.root,
            env=other.environ,
            capture_output=True,
            text=True,
            timeout=300 + run_size[name] // 4,
        )
        assert restore.returncode == 0, restore.stderr
        restored = hashlib.sha256()
        with open(other.root / "copy" / "big.bin", "rb") as f:
            while chunk := f.read(1 << 20):
                restored.update(chunk)
        assert restored.hexdigest() == expected(run_size[name]).hexdigest()
        assert json.loads(restore.stdout)["size"] == run_size[name] * 1024 * 1024
        return int(restore.stderr.rsplit("PEAK", 1)[1].split()[0])

    def expected(mib: int) -> Any:
        block = random.Random(1).randbytes(1 << 20)
        digest = hashlib.sha256()
        for i in range(mib):
            digest.update(block[i:] + block[:i])
        return digest

    run_size = {"small": 1, "big": BIG_MIB}
    with s3_server(tmp_path, seaweedfs) as server:
        ws = new_workspace(server, tmp_path / "producer")
        try:
            ws.write(
                "big.py",
                """
                import random
                import coflux as cf

                @cf.workflow()
                def big(mib: int) -> cf.Asset:
                    block = random.Random(1).randbytes(1 << 20)
                    with open("big.bin", "wb") as f:
                        for i in range(mib):
                            f.write(block[i:] + block[:i])
                    return cf.persist_asset("big.bin")
                """,
            )
            ws.start_agent("big.py")
            runs = {
                n: json.loads(
                    ws.cli(
                        "submit", "big.py", "big", str(m), "--wait", "--json", timeout=60 + m // 4
                    ).stdout
                )
                for n, m in run_size.items()
            }
        finally:
            ws.stop_agents()
        small = peak_of_restoring(runs["small"], "small")
        big = peak_of_restoring(runs["big"], "big")
    print(f"S51: restoring {BIG_MIB} MiB peaked at {big} KiB, 1 MiB at {small} KiB")
    # Streamed: restoring BIG_MIB - 1 MiB more costs far less than holding them.
    assert big - small < 128 * 1024, (small, big)


def test_s52_a_tampered_object_is_detected_on_read_and_shown_as_unavailable(
    tmp_path: Path, seaweedfs: Any
) -> None:
    bucket = seaweedfs.new_bucket()
    with s3_server(tmp_path, seaweedfs, bucket) as server:
        ws = new_workspace(server, tmp_path / "producer")
        try:
            ws.write("producer.py", PRODUCER)
            ws.start_agent("producer.py")
            run = ws.cli_json("submit", "producer.py", "produce", "1", "--wait")
            with ws.client() as client:
                steps = client.get_run(run["id"])["steps"]
            blob = next(
                e["value"]["blob"]
                for s in steps
                for e in s["executions"]
                if e["value"] and e["value"].get("blob") and e["value"]["format"] == "json"
            )
            name = f"coflux/{ws.project}/{blob[:2]}/{blob}"
            seaweedfs.client().put_object(Bucket=bucket, Key=name, Body=b"not what was stored")
            other = Workspace(tmp_path / "consumer", server.url, ws.project)
            other.root.mkdir()
            shown = other.cli_json("runs", "show", run["id"])
            restored = other.cli("assets", "restore", run["result"][0]["ref"], "--to", "copy")
            page = httpx.get(f"{server.url}/projects/{ws.project}/runs/{run['id']}")
            # The asset's manifest lost: the page says why its files aren't listed.
            manifest = run["result"][0]["ref"][2:]
            seaweedfs.client().delete_object(
                Bucket=bucket, Key=f"coflux/{ws.project}/{manifest[:2]}/{manifest}"
            )
            step = f"{server.url}/projects/{ws.project}/runs/{run['id']}?step=2"
            lost = httpx.get(step)
        finally:
            ws.stop_agents()
    result = shown["result"]
    assert result["$type"] == "coflux.Unavailable"
    assert result["blob"] == blob and "is corrupt" in result["reason"]
    assert shown["state"] == "succeeded" and len(shown["steps"]) == 2
    assert restored.returncode == 0, restored.stderr  # the asset's blobs are intact
    assert page.status_code == 200
    assert lost.status_code == 200
    assert f"Files unavailable: blob {manifest} is not in the store" in lost.text, lost.text[-3000:]
    objects = _objects(seaweedfs, bucket, "coflux/")
    assert name not in objects  # moved aside, so a good copy can be put back
    assert any(k.startswith(f"coflux/quarantine/{ws.project}/{blob}.") for k in objects)


def test_s53_an_unreachable_store_is_a_clear_error_and_nothing_is_acknowledged(
    tmp_path: Path, seaweedfs: Any
) -> None:
    from seaweedfs import SeaweedFS, binary

    # A server pointed at a store nobody listens on doesn't start.
    ws = Workspace(tmp_path, "http://127.0.0.1:1", "none")
    refused = ws.cli(
        "server",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "refused"),
        "--blob-store",
        "s3://bucket/coflux",
        env_extra={**seaweedfs.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"},
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: can't use blob store s3://bucket/coflux at http")
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    # A bucket that doesn't exist, named by COFLUX_BLOB_STORE, then by .coflux.toml.
    serve = ("server", "--port", str(free_port()), "--data-dir", str(tmp_path / "refused"))
    by_env = ws.cli(
        *serve, env_extra={**seaweedfs.environ, "COFLUX_BLOB_STORE": "s3://no-such-bucket/x"}
    )
    (tmp_path / ".coflux.toml").write_text('blob_store = "s3://no-such-bucket/y"\n')
    by_file = ws.cli(*serve, env_extra=seaweedfs.environ)
    for done, url in ((by_env, "s3://no-such-bucket/x"), (by_file, "s3://no-such-bucket/y")):
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: can't use blob store {url} at {seaweedfs.endpoint}")
        assert len(done.stderr.strip().splitlines()) == 1
    (tmp_path / ".coflux.toml").unlink()

    # A store that dies while the server runs: the persist fails, nothing is recorded.
    own = SeaweedFS(binary() or "weed", tmp_path / "own-s3").start()
    bucket = own.new_bucket()
    try:
        with s3_server(tmp_path, own, bucket) as server:
            ws = new_workspace(server, tmp_path / "ws")
            try:
                ws.write("producer.py", PRODUCER)
                ws.start_agent("producer.py")
                own.stop()
                run = json.loads(
                    ws.cli("submit", "producer.py", "produce", "2", "--wait", "--json").stdout
                )
                with ws.client() as client:
                    assets = client.run_assets(run["id"])
                health = httpx.get(f"{server.url}/api/health")
            finally:
                ws.stop_agents()
    finally:
        own.stop()
    assert run["state"] == "failed"
    error = run["steps"][1]["executions"][-1]["error"]
    assert "blob store" in error["message"], error
    assert assets == []
    assert health.status_code == 200


def test_s54_two_servers_on_one_database_and_one_bucket_keep_every_byte(
    tmp_path: Path, seaweedfs: Any, postgres: Any
) -> None:
    """Assets and large results persisted through A; A is killed (-9); B, on the
    same database and bucket, serves every one. The agent and the CLI, given
    both addresses, move to B by themselves, and new work goes on through it."""
    url = postgres.new_database()
    bucket = seaweedfs.new_bucket()
    with (
        s3_server(tmp_path, seaweedfs, bucket, database_url=url, agent_timeout=5) as a,
        s3_server(tmp_path, seaweedfs, bucket, database_url=url, agent_timeout=5) as b,
    ):
        ws = new_workspace(a, tmp_path / "producer")  # made through A: A holds the lease
        ws.server = f"{a.url},{b.url}"
        try:
            ws.write("producer.py", PRODUCER)
            ws.start_agent("producer.py")
            runs = [
                ws.cli_json("submit", "producer.py", "produce", str(i), "--wait") for i in (3, 4)
            ]
            a.kill()
            other = Workspace(tmp_path / "consumer", f"{a.url},{b.url}", ws.project)
            other.root.mkdir()
            shown = [other.cli_json("runs", "show", r["id"]) for r in runs]
            restored = [
                other.cli_json("assets", "restore", r["result"][0]["ref"], "--to", f"copy{i}")
                for i, r in enumerate(runs)
            ]
            after = ws.cli_json("submit", "producer.py", "produce", "8", "--wait")
            restored.append(
                other.cli_json("assets", "restore", after["result"][0]["ref"], "--to", "copy2")
            )
            # Re-running a run made through A: reusing its results, then executing again.
            reruns = [
                json.loads(ws.cli("rerun", f"{runs[0]['id']}:1", *force, "--wait", "--json").stdout)
                for force in ((), ("--force",))
            ]
        finally:
            ws.stop_agents()
    assert [r["state"] for r in runs] == ["succeeded", "succeeded"]
    assert [s["result"][1] for s in shown] == ["x" * 300_003, "x" * 300_004]
    assert [r["files"] for r in restored] == [4, 4, 4]
    assert _digests(other.root / "copy0") == _expected(3)
    assert _digests(other.root / "copy1") == _expected(4)
    assert after["state"] == "succeeded" and after["result"][1] == "x" * 300_008
    assert _digests(other.root / "copy2") == _expected(8)
    assert f"not connected to {a.url}" in ws.agent_log()
    assert [r["state"] for r in reruns] == ["succeeded", "succeeded"]
    assert [r["result"] for r in reruns] == [runs[0]["result"], runs[0]["result"]]


def test_s54_a_token_opens_only_its_own_projects_blobs(tmp_path: Path, seaweedfs: Any) -> None:
    from test_security import bearer, make_token

    from coflux.cache import hash_bytes
    from coflux.remote.client import Client

    with s3_server(tmp_path, seaweedfs, args=("--auth",)) as server:
        tokens = {p: make_token(server, p, f"{p}-token") for p in ("alpha", "beta")}
        for project, token in tokens.items():
            created = httpx.post(
                f"{server.url}/api/projects", json={"name": project}, headers=bearer(token)
            )
            assert created.status_code == 201, created.text
        data = b"alpha's secret bytes" * 100
        key = hash_bytes(data)
        with Client(server.url, "alpha", token=tokens["alpha"]) as alpha:
            alpha.put_blob(key, data)
            own = alpha.download_urls([key])
            read_back = alpha.get_blob(key)
        other = httpx.post(
            f"{server.url}/api/projects/alpha/blobs/downloads",
            json={"keys": [key]},
            headers=bearer(tokens["beta"]),
        )
        upload = httpx.post(
            f"{server.url}/api/projects/alpha/blobs/uploads",
            json={"blobs": [{"key": key, "size": len(data)}]},
            headers=bearer(tokens["beta"]),
        )
        beta = httpx.post(
            f"{server.url}/api/projects/beta/blobs/downloads",
            json={"keys": [key]},
            headers=bearer(tokens["beta"]),
        ).json()
        assert key in beta["urls"], beta
        in_beta = httpx.get(beta["urls"][key])
        unsigned = httpx.get(own["urls"][key].split("?")[0])
    assert read_back == data
    assert own["direct"] is True and f"/coflux/alpha/{key[:2]}/{key}?" in own["urls"][key]
    # Refused as if alpha didn't exist (the guard doesn't tell a token of one
    # project which others exist), and no URL is given.
    assert (other.status_code, upload.status_code) == (404, 404)
    assert "http" not in other.text + upload.text
    # In beta the same key names beta's object, which doesn't exist.
    assert f"/coflux/beta/{key[:2]}/{key}?" in beta["urls"][key]
    assert in_beta.status_code == 404
    assert unsigned.status_code == 403  # the store itself wants a signature


def test_s55_gc_keeps_everything_referenced_and_migrate_is_safe_to_repeat(
    tmp_path: Path, seaweedfs: Any
) -> None:
    """A server on the local directory: gc removes only an unreferenced blob; the
    blobs are migrated to the bucket twice (the second copies nothing), and a
    server on the bucket then restores the asset."""
    server = ServerProcess(tmp_path / "data").start()
    ws = new_workspace(server, tmp_path / "producer")
    try:
        ws.write("producer.py", PRODUCER)
        ws.start_agent("producer.py")
        run = ws.cli_json("submit", "producer.py", "produce", "5", "--wait")
        stray = b"nothing refers to this blob"
        from coflux.cache import hash_bytes

        with ws.client() as client:
            client.put_blob(hash_bytes(stray), stray)
        ws.stop_agents()
    finally:
        server.stop()
    data = ["--data-dir", str(tmp_path / "data")]
    if server.database_url:
        data += ["--database-url", server.database_url]
    admin = Workspace(tmp_path, server.url, ws.project)
    dry = admin.cli_json("server", "gc", *data, "--grace", "0", "--dry-run")
    kept = admin.cli_json("server", "gc", *data, "--grace", "24h")
    removed = admin.cli_json("server", "gc", *data, "--grace", "0")
    again = admin.cli_json("server", "gc", *data, "--grace", "0")
    bucket = seaweedfs.new_bucket()
    s3 = seaweedfs.environ
    migrate = ("server", "blobs", "migrate", "--data-dir", str(tmp_path / "data"))
    migrate += ("--to", f"s3://{bucket}/coflux", "--json")
    # Twice: the second finds every blob there already.
    first, second = (
        json.loads(admin.cli(*migrate, env_extra=s3, check=True).stdout) for _ in range(2)
    )
    moved = ServerProcess(
        tmp_path / "data",
        args=("--blob-store", f"s3://{bucket}/coflux"),
        database_url=server.database_url,
    )
    moved.env = dict(s3)
    moved.start()
    try:
        other = Workspace(tmp_path / "consumer", moved.url, ws.project)
        other.root.mkdir()
        restored = other.cli_json("assets", "restore", run["result"][0]["ref"], "--to", "copy")
        shown = other.cli_json("runs", "show", run["id"])
        # On the bucket too: a stray blob uploaded directly, and a multipart
        # upload a client began and never completed.
        stray2 = b"nothing refers to this one either" * 1000
        with other.client() as client:
            client.put_blob(hash_bytes(stray2), stray2)
        seaweedfs.client().create_multipart_upload(
            Bucket=bucket, Key=f"coflux/{ws.project}/ab/abandoned"
        )
        on_s3 = [*data, "--blob-store", f"s3://{bucket}/coflux"]
        s3_dry = json.loads(
            admin.cli(
                "server",
                "gc",
                *on_s3,
                "--grace",
                "0",
                "--dry-run",
                "--json",
                env_extra=s3,
                check=True,
            ).stdout
        )
        s3_gc = json.loads(
            admin.cli(
                "server", "gc", *on_s3, "--grace", "0", "--json", env_extra=s3, check=True
            ).stdout
        )
        unfinished = (
            seaweedfs.client()
            .list_multipart_uploads(Bucket=bucket, Prefix=f"coflux/{ws.project}/")
            .get("Uploads", [])
        )
        third = Workspace(tmp_path / "third", moved.url, ws.project)
        third.root.mkdir()
        again_restored = third.cli_json("assets", "restore", run["result"][0]["ref"], "--to", "c")
    finally:
        moved.stop()
    assert s3_dry["projects"][ws.project]["removed"] == [hash_bytes(stray2)]
    assert s3_gc["projects"][ws.project]["removed"] == [hash_bytes(stray2)]
    assert s3_gc["projects"][ws.project]["kept"] == 5
    assert s3_gc["projects"][ws.project]["aborted_uploads"] == 1 and unfinished == []
    assert again_restored["files"] == 4 and again_restored["from"] == "server"
    assert _digests(third.root / "c") == _expected(5)
    project = dry["projects"][ws.project]
    assert project["removed"] == [hash_bytes(stray)] and project["skipped"] is None
    assert kept["projects"][ws.project]["removed"] == []  # younger than the grace period
    assert removed["projects"][ws.project]["removed"] == [hash_bytes(stray)]
    assert again["projects"][ws.project]["removed"] == []
    # The manifest, three non-empty files and the result stay: 5 blobs.
    assert removed["projects"][ws.project]["kept"] == 5
    assert (first["copied"], first["already_there"], first["corrupt"]) == (5, 0, [])
    assert (second["copied"], second["already_there"]) == (0, 5)
    assert restored["files"] == 4
    assert _digests(other.root / "copy") == _expected(5)
    assert shown["result"][1] == "x" * 300_005
