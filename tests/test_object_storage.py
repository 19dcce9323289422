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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, Workspace, free_port, new_workspace, wait_until

from coflux.remote.server.blobstores.s3 import MULTIPART_SIZE

PRODUCER = """
    import os
    import random
    import coflux as cf

    SIZES = {"empty": 0, "one": 1, "under": %d, "over": %d}

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
""" % (MULTIPART_SIZE - 1, MULTIPART_SIZE + 1)


def _rchar(server: ServerProcess) -> int:
    """Bytes the server process has read from files and sockets so far."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@contextmanager
def s3_server(
    tmp_path: Path, seaweedfs: Any, bucket: str | None = None, **kwargs: Any
) -> Iterator[ServerProcess]:
    bucket = bucket or seaweedfs.new_bucket()
    server = ServerProcess(
        tmp_path / f"data-{free_port()}", args=("--blob-store", f"s3://{bucket}/coflux"), **kwargs
    )
    server.env = dict(seaweedfs.environ)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
    }


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


def test_s51_a_large_file_is_streamed_in_bounded_memory(
    tmp_path: Path, seaweedfs: Any
) -> None:
    """256 MiB (not the issue's 2 GiB, to keep CI short): eight 32 MiB pieces,
    each in two parts, restored by a CLI whose peak memory stays far below it."""
    import resource
    import subprocess
    import sys

    with s3_server(tmp_path, seaweedfs) as server:
        ws = new_workspace(server, tmp_path / "producer")
        try:
            ws.write(
                "big.py",
                """
                import os
                import coflux as cf

                @cf.workflow()
                def big() -> cf.Asset:
                    block = os.urandom(1 << 20)
                    with open("big.bin", "wb") as f:
                        for i in range(256):
                            f.write(block[i:] + block[:i])
                    return cf.persist_asset("big.bin")
                """,
            )
            ws.start_agent("big.py")
            run = ws.cli_json("submit", "big.py", "big", "--wait")
            other = Workspace(tmp_path / "consumer", server.url, ws.project)
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
                timeout=300,
            )
        finally:
            ws.stop_agents()
    assert restore.returncode == 0, restore.stderr
    peak_kib = int(restore.stderr.rsplit("PEAK", 1)[1].split()[0])
    assert json.loads(restore.stdout)["size"] == 256 * 1024 * 1024
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(other.root / "copy" / "big.bin") == digest(ws.root / "big.bin")
    assert peak_kib < 200 * 1024, peak_kib  # far below the 256 MiB restored
    del resource


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
            blob = next(
                e["value"]["blob"]
                for s in ws.client().get_run(run["id"])["steps"]
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
        finally:
            ws.stop_agents()
    result = shown["result"]
    assert result["$type"] == "coflux.Unavailable"
    assert result["blob"] == blob and "is corrupt" in result["reason"]
    assert shown["state"] == "succeeded" and len(shown["steps"]) == 2
    assert restored.returncode == 0, restored.stderr  # the asset's blobs are intact
    assert page.status_code == 200
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
                run = ws.cli_json("submit", "producer.py", "produce", "2", "--wait")
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
