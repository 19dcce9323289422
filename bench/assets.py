"""Assets through a real server: persist on one machine, restore on another, against `cp -r`.

    python -m bench.assets [--size-mib 1024] [--files 1000]

A tree of FILES files, SIZE_MIB in all, of random content. Two workspaces
stand for two machines, each with its own agent and `.coflux/cas`:
- persist: machine A's task calls `cf.persist_asset(tree)`: every file is
  hashed and written into A's store, then the blobs the server lacks are
  uploaded and the asset is recorded (measured inside the task);
- restore: machine B's task restores the asset into a fresh folder: the blobs
  are downloaded into B's store, verified, and written out;
- repersist: A persists the unchanged tree again; the agent reports the
  bytes it uploaded (target: 0);
- hashing: the store's streaming hasher over the tree's files, against raw
  xxh3-128 over an in-memory buffer.
Baselines in the same run: `cp -r` of the tree on the same disk (target: persist
and restore each within 2x of it), and `cp -r` until the copy is on disk (`sync
-f`): every blob is fsynced into the stores before persist or restore returns.

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from .core import free_port

MACHINE_A = """
import time
import coflux as cf

@cf.task()
def persist_tree(path: str) -> list:
    started = time.perf_counter()
    asset = cf.persist_asset(path)
    return [asset.ref, time.perf_counter() - started]

@cf.workflow()
def persist(path: str) -> list:
    return persist_tree(path)
"""

MACHINE_B = """
import time
import coflux as cf

@cf.task()
def restore_tree(ref: str, to: str) -> float:
    started = time.perf_counter()
    cf.restore_asset(ref, to=to)
    return time.perf_counter() - started

@cf.workflow()
def restore(ref: str, to: str) -> float:
    return restore_tree(ref, to)
"""


def make_tree(root: Path, size: int, files: int) -> None:
    block = os.urandom(1024 * 1024)
    each = size // files
    for i in range(files):
        folder = root / f"d{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"f{i:04d}.bin", "wb") as f:
            f.write(i.to_bytes(8, "little"))  # every file different
            written = 8
            offset = (i * 7919) % len(block)
            while written < each:
                piece = (block[offset:] + block[:offset])[: each - written]
                f.write(piece)
                written += len(piece)


BIG_FILE = """
import resource, sys, time
from pathlib import Path
from coflux.assets import persist, restore
from coflux.cache import BlobStore
base = Path(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
store = BlobStore(base / "cas")
started = time.perf_counter()
key, entries, _ = persist(store, base, "big.bin", None)
persisted = time.perf_counter() - started
started = time.perf_counter()
restore(store, entries, base / "restored")
restored = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, persisted, restored)
"""


def big_file(base: Path, gib: int) -> dict[str, float]:
    """Persist and restore one file of ``gib`` GiB in a process of its own: its peak
    memory beyond what the process held before (target: a few MiB)."""
    with open(base / "big.bin", "wb") as f:
        block = os.urandom(4 * 1024 * 1024)
        for i in range(gib * 256):
            f.write(block[i % 4096 :] + block[: i % 4096])
    out = subprocess.run(
        [sys.executable, "-c", BIG_FILE, str(base)], capture_output=True, text=True, check=True
    ).stdout.split()
    before, after, persisted, restored = (float(x) for x in out)
    same = subprocess.run(["cmp", "-s", str(base / "big.bin"), str(base / "restored" / "big.bin")])
    return {
        "gib": gib,
        "peak_rss_mib_before": round(before / 1024, 1),
        "peak_rss_mib_after": round(after / 1024, 1),
        "persist_seconds": round(persisted, 2),
        "restore_seconds": round(restored, 2),
        "identical": same.returncode == 0,
    }


def drop_caches_if_possible() -> bool:
    """Compare cold to cold where the machine lets us (root on Linux), else warm to warm."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed_cp(source: Path, dest: Path, durable: bool = False) -> float:
    """`cp -r`; with ``durable``, until the copy is on disk (`sync -f`), as the
    stores' blobs are before persist or restore returns."""
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(source), str(dest)], check=True)
    if durable:
        subprocess.run(["sync", "-f", str(dest)], check=True)
    return time.perf_counter() - started


def hashing(tree: Path) -> dict[str, float]:
    import xxhash

    from coflux.cache.keys import Hasher
    from coflux.cache.store import CHUNK_SIZE

    paths = sorted(tree.rglob("*.bin"))
    for path in paths:  # from the page cache: the hashing, not the disk, is measured
        path.read_bytes()
    total = 0
    started = time.perf_counter()
    for path in paths:
        hasher = Hasher()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                hasher.update(chunk)
                total += len(chunk)
        hasher.hexdigest()
    files = time.perf_counter() - started
    buffer = os.urandom(256 * 1024 * 1024)
    started = time.perf_counter()
    xxhash.xxh3_128_hexdigest(buffer)
    raw = time.perf_counter() - started
    return {
        "store_hasher_gib_s": round(total / files / 2**30, 2),
        "raw_xxh3_gib_s": round(len(buffer) / raw / 2**30, 2),
    }


class Machine:
    def __init__(self, root: Path, url: str, module: str, source: str) -> None:
        self.root = root
        root.mkdir()
        (root / module).write_text(textwrap.dedent(source))
        self.env = {
            **os.environ,
            "COFLUX_SERVER": url,
            "COFLUX_PROJECT": "bench",
            "COFLUX_ENV": "production",
        }
        self.log = root / "agent.log"
        with open(self.log, "wb") as out:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "coflux", "agent", module],
                cwd=root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def submit(self, module: str, workflow: str, *arguments: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "coflux", "submit", module, workflow, *arguments]
            + ["--wait", "--json"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        run = json.loads(out.stdout)
        assert run["state"] == "succeeded", run
        return run

    def close(self) -> None:
        os.killpg(self.agent.pid, signal.SIGTERM)
        self.agent.wait(30)


@contextlib.contextmanager
def two_machines(
    base: Path, server_args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[tuple[Machine, Machine]]:
    """A server over ``base/server`` (with ``server_args``) and two machines
    connected to it, each with an agent and a store of its own; all stopped after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "coflux", "server", "--port", str(port)]
        + ["--data-dir", str(base / "server"), *server_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    machines: list[Machine] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/api/health").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        httpx.post(f"{url}/api/projects", json={"name": "bench"}).raise_for_status()
        machines.append(Machine(base / "machine-a", url, "machine_a.py", MACHINE_A))
        machines.append(Machine(base / "machine-b", url, "machine_b.py", MACHINE_B))
        agents = f"{url}/api/projects/bench/agents"
        while sum(x["connected"] for x in httpx.get(agents).json()) < 2:
            time.sleep(0.05)
        yield machines[0], machines[1]
    finally:
        for machine in machines:
            machine.close()
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--big-file-gib", type=int, default=2)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base = Path(tmp)
        (base / "big").mkdir()
        tree = base / "tree"
        make_tree(tree, size, args.files)
        cold = drop_caches_if_possible()
        cp_seconds = timed_cp(tree, base / "cp-copy")
        shutil.rmtree(base / "cp-copy")
        drop_caches_if_possible()
        cp_sync_seconds = timed_cp(tree, base / "cp-copy", durable=True)
        shutil.rmtree(base / "cp-copy")

        with two_machines(base) as (a, b):
            drop_caches_if_possible()
            started = time.perf_counter()
            run = a.submit("machine_a.py", "persist", json.dumps(str(tree)))
            persist_total = time.perf_counter() - started
            ref, persist_seconds = run["result"]
            upload = re.search(rf"persisted by {run['id']}:\S* in (\S+)s:", a.log.read_text())

            drop_caches_if_possible()
            restored = base / "restored"
            started = time.perf_counter()
            run = b.submit("machine_b.py", "restore", json.dumps(ref), json.dumps(str(restored)))
            restore_total = time.perf_counter() - started
            restore_seconds = run["result"]
            same = subprocess.run(["diff", "-r", "-q", str(tree), str(restored)]).returncode == 0

            again = a.submit("machine_a.py", "persist", json.dumps(str(tree)))
            uploads = re.findall(
                rf"persisted by {again['id']}:\S* in \S+: uploaded (\d+) blob\(s\), (\d+) bytes",
                a.log.read_text(),
            )
            report = {
                "benchmark": "assets",
                "python": platform.python_version(),
                "machine": f"{platform.machine()} {os.cpu_count()} cpu",
                "caches_dropped": cold,
                "tree": {"files": args.files, "bytes": size},
                "baseline_cp_seconds": round(cp_seconds, 3),
                "persist_seconds": round(persist_seconds, 3),
                "persist_vs_cp": round(persist_seconds / cp_seconds, 2),
                "baseline_cp_sync_seconds": round(cp_sync_seconds, 3),
                "persist_vs_cp_sync": round(persist_seconds / cp_sync_seconds, 2),
                "persist_upload_seconds": float(upload.group(1)) if upload else None,
                "persist_run_seconds": round(persist_total, 3),
                "restore_seconds": round(restore_seconds, 3),
                "restore_vs_cp": round(restore_seconds / cp_seconds, 2),
                "restore_vs_cp_sync": round(restore_seconds / cp_sync_seconds, 2),
                "restore_run_seconds": round(restore_total, 3),
                "restored_identical": same,
                "repersist_same_ref": again["result"][0] == ref,
                "repersist_uploaded_bytes": sum(int(b) for _, b in uploads) if uploads else None,
                "hashing": hashing(tree),
                "big_file": big_file(base / "big", args.big_file_gib)
                if args.big_file_gib
                else None,
                "target": "persist and restore within 2x of cp -r; re-persist uploads 0 bytes",
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
