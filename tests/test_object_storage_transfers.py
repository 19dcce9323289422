"""Direct transfers with object storage through faults and from every sender (issue 23).

S56: a multipart upload cut off mid-way is carried on by the next uploader
(here a restarted agent): the parts the store already holds are not sent
again. The server's store endpoint is a proxy (tests/proxy.py) that sees
every request line and cuts the connection of the one chosen part.
S57: `coflux sync` pushes an offline run's blobs the way agents upload, directly
to the bucket, not through the server.
S59: a blob of at most UNCHECKED_SIZE is offered with a conditional PUT and no
HEAD first; a second offer of it is refused by the store (412) and counted as
stored, and the object stays the first one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conftest import Workspace, new_workspace
from test_object_storage import PRODUCER, _digests, _expected, _objects, _rchar, s3_server

from coflux.cache import hash_bytes
from coflux.remote import transfers
from coflux.remote.server.blobstores.s3 import MULTIPART_SIZE, UNCHECKED_SIZE

#: Four parts: three whole ones and a shorter last (under the 64 MiB blob limit).
BIG = 3 * MULTIPART_SIZE + 5 * 1024 * 1024

BIG_RESULT = """
    import random
    import coflux as cf

    @cf.workflow()
    def big(seed: int) -> bytes:
        return random.Random(seed).randbytes(SIZE)
""".replace("SIZE", str(BIG))


def _part_puts(lines: list[str]) -> list[int]:
    """The part numbers of the multipart PUTs among ``lines``, in order."""
    parts = []
    for line in lines:
        method, target, _ = line.split(" ")
        query = parse_qs(urlsplit(target).query)
        if method == "PUT" and "partNumber" in query:
            parts.append(int(query["partNumber"][0]))
    return parts


def test_s56_an_interrupted_multipart_upload_resumes_without_resending_stored_parts(
    tmp_path: Path, seaweedfs: Any
) -> None:
    from proxy import Proxy

    proxy = Proxy(seaweedfs.port)
    seen: list[str] = []
    cut = {"part": 3}

    def watch(line: str) -> bool:
        seen.append(line)
        return f"partNumber={cut['part']}&" not in line and not line.endswith(
            f"partNumber={cut['part']} HTTP/1.1"
        )

    proxy.on_request = watch
    bucket = seaweedfs.new_bucket()
    try:
        # The server (and so every URL it presigns) reaches the store through the proxy.
        through_proxy = {**seaweedfs.environ, "AWS_ENDPOINT_URL": proxy.url}
        with s3_server(tmp_path, _Endpoint(seaweedfs, through_proxy), bucket) as server:
            ws = new_workspace(server, tmp_path / "ws")
            try:
                ws.write("flows.py", BIG_RESULT)
                ws.start_agent("flows.py")
                failed = json.loads(
                    ws.cli("submit", "flows.py", "big", "1", "--wait", "--json").stdout
                )
                first = _part_puts(seen)
                unfinished = seaweedfs.client().list_multipart_uploads(Bucket=bucket)["Uploads"]
                [upload] = unfinished
                stored = seaweedfs.client().list_parts(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )["Parts"]
                # A restarted uploader, the connection healed.
                ws.stop_agents()
                cut["part"] = 0
                seen.clear()
                ws.start_agent("flows.py")
                rerun = json.loads(
                    ws.cli("rerun", f"{failed['id']}:1", "--force", "--wait", "--json").stdout
                )
                second = _part_puts(seen)
                with ws.client() as client:
                    [step] = client.get_run(rerun["id"])["steps"]
                left = seaweedfs.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            finally:
                ws.stop_agents()
    finally:
        proxy.close()
    error = failed["steps"][0]["executions"][-1]["error"]
    assert failed["state"] == "failed" and "blob store failed uploading blob" in error["message"]
    # Parts 1 and 2 went; part 3 was cut on each of its three attempts.
    assert first == [1, 2, 3, 3, 3]
    assert [(p["PartNumber"], p["Size"]) for p in stored] == [
        (1, MULTIPART_SIZE),
        (2, MULTIPART_SIZE),
    ]
    # Carried on by the restarted agent: only the parts the store lacked were sent.
    assert second == [3, 4]
    assert rerun["state"] == "succeeded", rerun
    assert left == []
    # The object completed from both uploads is the whole result, as hashed by the agent.
    key = step["executions"][-1]["value"]["blob"]
    name = f"coflux/{ws.project}/{key[:2]}/{key}"
    body = seaweedfs.client().get_object(Bucket=bucket, Key=name)["Body"].read()
    assert hash_bytes(body) == key
    assert random.Random(1).randbytes(BIG) in body


def _requests_by_object(lines: list[str], project: str) -> dict[str, list[str]]:
    """The methods of the requests made on each of the project's blob objects (by
    the blob's size class), in order, from the request lines the proxy saw."""
    methods: dict[str, list[str]] = {}
    for line in lines:
        method, target, _ = line.split(" ")
        path = urlsplit(target).path
        if f"/coflux/{project}/" in path and "partNumber" not in target:
            methods.setdefault(path.rsplit("/", 1)[-1], []).append(method)
    return methods


class _Endpoint:
    """The test's SeaweedFS, as ``s3_server`` sees it, with other AWS settings."""

    def __init__(self, seaweedfs: Any, environ: dict[str, str]) -> None:
        self.seaweedfs = seaweedfs
        self.environ = environ

    def new_bucket(self) -> str:
        return str(self.seaweedfs.new_bucket())


def test_s57_sync_pushes_an_offline_runs_blobs_directly_to_the_bucket(
    tmp_path: Path, seaweedfs: Any
) -> None:
    bucket = seaweedfs.new_bucket()
    with s3_server(tmp_path, seaweedfs, bucket) as server:
        ws = new_workspace(server, tmp_path / "ws")
        ws.write("producer.py", PRODUCER)
        ws.cli("register", "producer.py", check=True)
        made = ws.cli(
            "run", "producer.py", "produce", "6", "--json", env_extra={"COFLUX_SERVER": ""}
        )
        assert made.returncode == 0, made.stderr
        offline = json.loads(made.stdout)
        before = _rchar(server)
        pushed = ws.cli_json("sync")
        through_server = _rchar(server) - before
        other = Workspace(tmp_path / "other", server.url, ws.project)
        other.root.mkdir()
        restored = other.cli_json("assets", "restore", offline["result"][0]["ref"], "--to", "copy")
        shown = other.cli_json("runs", "show", offline["id"])
    assert [(p["description"], p["status"]) for p in pushed] == [
        (f"push run {offline['id']}", "pushed")
    ]
    assert restored["files"] == 4 and restored["from"] == "server"
    assert _digests(other.root / "copy") == _expected(6)
    assert shown["result"][1] == "x" * 300_006
    objects = _objects(seaweedfs, bucket, f"coflux/{ws.project}/")
    assert len(objects) == 5  # three non-empty files, the manifest, the result
    # The 32 MiB of the asset went from the workspace to the bucket directly.
    assert through_server < 4 * 1024 * 1024, through_server


SMALL_FILES = """
    import os
    import coflux as cf

    SIZES = {"small": 1000, "edge": EDGE, "over": EDGE + 1}

    @cf.task()
    def make(tag: str) -> object:
        os.makedirs("out", exist_ok=True)
        for name, size in SIZES.items():
            with open(f"out/{name}.bin", "wb") as f:
                f.write(name.encode()[:1] * size)
        return cf.persist_asset("out")

    @cf.workflow()
    def produce(tag: str) -> object:
        return make.submit(tag).result()
""".replace("EDGE", str(UNCHECKED_SIZE))


def test_s59_small_blobs_are_offered_with_a_conditional_put_and_never_stored_twice(
    tmp_path: Path, seaweedfs: Any
) -> None:
    from proxy import Proxy

    proxy = Proxy(seaweedfs.port)
    seen: list[str] = []
    proxy.on_request = lambda line: seen.append(line) is None
    bucket = seaweedfs.new_bucket()
    small = b"s" * 1000
    try:
        # Every request on the bucket, the server's and the uploaders', passes the proxy.
        through_proxy = {**seaweedfs.environ, "AWS_ENDPOINT_URL": proxy.url}
        with s3_server(tmp_path, _Endpoint(seaweedfs, through_proxy), bucket) as server:
            ws = new_workspace(server, tmp_path / "ws")
            try:
                ws.write("flows.py", SMALL_FILES)
                ws.start_agent("flows.py")
                runs = []
                for tag in ("first", "second"):
                    seen.clear()
                    run = ws.cli_json("submit", "flows.py", "produce", json.dumps(tag), "--wait")
                    runs.append((run, _requests_by_object(seen, ws.project)))
                with ws.client() as client:
                    # The plan for a stored small blob, followed once more by hand.
                    [plan] = client.upload_plans([(hash_bytes(small), len(small))])["uploads"]
                    name = f"coflux/{ws.project}/{plan['key'][:2]}/{plan['key']}"
                    before = seaweedfs.client().head_object(Bucket=bucket, Key=name)
                    read = lambda o, n: small[o : o + n]  # noqa: E731
                    again = transfers.put_blob(client.direct, plan, read, len(small))
                    after = seaweedfs.client().head_object(Bucket=bucket, Key=name)
            finally:
                ws.stop_agents()
    finally:
        proxy.close()
    (first, on_first), (second, on_second) = runs
    assert first["state"] == second["state"] == "succeeded"
    manifest = first["result"]["ref"].removeprefix("a:")
    assert second["result"]["ref"] == first["result"]["ref"]
    small_key = hash_bytes(small)
    edge_key = hash_bytes(b"e" * UNCHECKED_SIZE)
    over_key = hash_bytes(b"o" * (UNCHECKED_SIZE + 1))
    # Up to UNCHECKED_SIZE a blob is PUT without asking first; over it, a HEAD
    # comes first. The HEAD after each is the check before the asset is recorded.
    assert on_first == {
        small_key: ["PUT", "HEAD"],
        edge_key: ["PUT", "HEAD"],
        over_key: ["HEAD", "PUT", "HEAD"],
        manifest: ["PUT", "HEAD"],
    }
    # The same files again: the small ones are offered once more, conditionally,
    # and the store keeps what it has; the checked one is not sent at all.
    assert on_second == {
        small_key: ["PUT", "HEAD"],
        edge_key: ["PUT", "HEAD"],
        over_key: ["HEAD", "HEAD"],
        manifest: ["PUT", "HEAD"],
    }
    assert plan["headers"] == {"If-None-Match": "*"}
    # The store answered 412 (put_blob's None), and the object is the first one.
    assert again is None
    assert after["ETag"] == before["ETag"] and after["LastModified"] == before["LastModified"]
