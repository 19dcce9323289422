"""Assets: persisted on one machine, restored on another, never outside their target.

Two workspaces on one project stand for two machines: each has its own
`.coflux/cas`, and its own agent hosting its own module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Workspace, private_stack

from coflux.assets import Entry, decode, encode, persist
from coflux.assets.manifest import PIECE_SIZE
from coflux.cache import BlobStore, hash_bytes

PRODUCER = """
    import hashlib
    import os
    import coflux as cf

    def write(name, text, mode=0o644):
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        with open(name, "w") as f:
            f.write(text)
        os.chmod(name, mode)

    @cf.task()
    def make_all(seed: str) -> dict:
        write("report.txt", "report")
        write("tree/a.csv", "a,1", 0o600)
        write("tree/sub/b.csv", "b,2")
        write("tree/sub/c.txt", seed, 0o755)
        return {
            "file": cf.persist_asset("report.txt"),
            "dir": cf.persist_asset("tree"),
            "csv": cf.persist_asset("tree", match="*.csv"),
            "whole": cf.persist_asset(),
        }

    @cf.task()
    def same_report() -> cf.Asset:
        write("elsewhere/report.txt", "report")
        return cf.persist_asset("elsewhere/report.txt")

    @cf.task()
    def big(size: int) -> bytes:
        return os.urandom(size)

    @cf.task()
    def many_files(count: int) -> list:
        digests = {}
        os.makedirs("many", exist_ok=True)
        for i in range(count):
            data = os.urandom(1 << 20)
            with open(f"many/f{i:03d}.bin", "wb") as f:
                f.write(data)
            digests[f"f{i:03d}.bin"] = hashlib.sha256(data).hexdigest()
        return [cf.persist_asset("many"), digests]

    @cf.workflow()
    def leaky(secret: str) -> cf.Asset:
        write("data/ok.txt", "fine")
        os.symlink(secret, "data/leak")
        return cf.persist_asset("data")
"""

CONSUMER = """
    import hashlib
    import os
    import coflux as cf
    from producer import big, make_all, many_files, same_report

    @cf.task()
    def read_back(asset: cf.Asset) -> dict:
        # (restore gives a file's own path for an asset of one file, else the folder)
        asset.restore(to="restored")
        where = "restored"
        found = {}
        for root, _, names in os.walk(where):
            for name in names:
                full = os.path.join(root, name)
                mode = oct(os.stat(full).st_mode & 0o777)
                with open(full) as f:
                    found[os.path.relpath(full, where)] = [f.read(), mode]
        return dict(sorted(found.items()))

    @cf.workflow()
    def pipeline(seed: str) -> dict:
        assets = make_all(seed)
        return {
            "refs": {name: asset.ref for name, asset in assets.items()},
            "same": same_report().ref,
            "files": {name: read_back(asset) for name, asset in assets.items()},
        }

    @cf.task()
    def restored_digests(asset: cf.Asset) -> dict:
        where = asset.restore(to="many-restored")
        return {
            name: hashlib.sha256(open(os.path.join(where, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(where))
        }

    @cf.workflow()
    def many(count: int) -> list:
        asset, digests = many_files(count)
        return [asset.ref, digests, restored_digests(asset)]

    @cf.task()
    def digest(data: bytes) -> list:
        return [len(data), hashlib.sha256(data).hexdigest()]

    @cf.workflow()
    def large(size: int) -> list:
        data = big(size)
        return [hashlib.sha256(data).hexdigest(), digest(data)]
"""

TREE = {
    "a.csv": ["a,1", "0o600"],
    "sub/b.csv": ["b,2", "0o644"],
    "sub/c.txt": ["s1", "0o755"],
}


def two_machines(server_url: str, project: str, tmp_path: Path) -> tuple[Workspace, Workspace]:
    producer = Workspace(tmp_path / "machine-a", server_url, project)
    consumer = Workspace(tmp_path / "machine-b", server_url, project)
    for ws in (producer, consumer):
        ws.root.mkdir()
        ws.write("producer.py", PRODUCER)
    consumer.write("consumer.py", CONSUMER)
    producer.start_agent("producer.py")
    consumer.start_agent("consumer.py", wait=False)
    consumer.wait_for_agents(2)  # the project's agents: both machines'
    return producer, consumer


def test_assets_travel_between_machines_by_content(
    server: ServerProcess, workspace: Workspace, tmp_path: Path
) -> None:
    producer, consumer = two_machines(server.url, workspace.project, tmp_path)
    try:
        first = consumer.cli_json("submit", "consumer.py", "pipeline", '"s1"', "--wait")
        assert first["state"] == "succeeded", first
        result = first["result"]
        assert result["files"] == {
            "file": {"report.txt": ["report", "0o644"]},
            "dir": TREE,
            "csv": {"a.csv": ["a,1", "0o600"], "sub/b.csv": ["b,2", "0o644"]},
            "whole": {"report.txt": ["report", "0o644"]}
            | {f"tree/{path}": value for path, value in TREE.items()},
        }
        refs = result["refs"]
        assert len(set(refs.values())) == 4
        # The same content persisted elsewhere by another task: the same reference.
        assert result["same"] == refs["file"]

        # A second run persists identical content: same references, nothing uploaded.
        second = consumer.cli_json("submit", "consumer.py", "pipeline", '"s1"', "--wait")
        assert second["result"]["refs"] == refs
        lines = [
            line
            for line in producer.agent_log().splitlines()
            if f"persisted by {second['id']}:" in line
        ]
        assert len(lines) == 5
        assert all(line.endswith("uploaded 0 blob(s), 0 bytes") for line in lines), lines

        listed = consumer.cli_json("assets", "list", first["id"])
        make_step = next(s["id"] for s in first["steps"] if s["target"] == "producer:make_all")
        assert [(a["ref"], a["step"], a["path"], a["files"], a["size"]) for a in listed[:4]] == [
            (refs["file"], make_step, "report.txt", 1, 6),
            (refs["dir"], make_step, "tree", 3, 8),
            (refs["csv"], make_step, "tree", 2, 6),
            (refs["whole"], make_step, ".", 4, 14),
        ]
        assert set(listed[0]) == {"ref", "step", "execution", "path", "files", "size"}

        shown = consumer.cli_json("assets", "show", refs["dir"])
        assert [(e["path"], e["mode"], e["size"]) for e in shown["entries"]] == [
            ("a.csv", 0o600, 3),
            ("sub/b.csv", 0o644, 3),
            ("sub/c.txt", 0o755, 2),
        ]
        tree = consumer.cli("assets", "show", refs["dir"]).stdout
        assert "sub/" in tree and "c.txt  2 B" in tree
    finally:
        producer.stop_agents()
        consumer.stop_agents()


def test_a_large_tree_uploads_while_it_is_persisted_and_restores_whole(
    server: ServerProcess, workspace: Workspace, tmp_path: Path
) -> None:
    """40 files of 1 MiB: more than one upload group (16 MiB) is handed to the
    agent while the rest are stored; every blob reaches the server once, and
    the tree restores identical on the other machine."""
    producer, consumer = two_machines(server.url, workspace.project, tmp_path)
    try:
        run = consumer.cli_json("submit", "consumer.py", "many", "40", "--wait")
        assert run["state"] == "succeeded", run
        ref, produced, restored = run["result"]
        assert len(produced) == 40
        assert restored == produced
        line = next(
            line
            for line in producer.agent_log().splitlines()
            if f"persisted by {run['id']}:" in line
        )
        blobs, sent = re.search(r"uploaded (\d+) blob\(s\), (\d+) bytes", line).groups()
        manifest = BlobStore(producer.root / ".coflux" / "cas").size(ref.removeprefix("a:"))
        assert (int(blobs), int(sent)) == (41, 40 * 2**20 + manifest)
    finally:
        producer.stop_agents()
        consumer.stop_agents()


def test_a_large_value_is_shared_through_the_stores(
    server: ServerProcess, workspace: Workspace, tmp_path: Path
) -> None:
    producer, consumer = two_machines(server.url, workspace.project, tmp_path)
    try:
        run = consumer.cli_json("submit", "consumer.py", "large", "3000000", "--wait")
        seen_by_workflow, (size, seen_by_task) = run["result"]
        assert size == 3000000 and seen_by_task == seen_by_workflow
        # The value is one blob, on both machines and on the server, under one name.
        blob = run["steps"][1]["executions"][0]
        assert blob["result"] == {"$type": "bytes", "repr": blob["result"]["repr"]}
        machine_a = set(BlobStore(producer.root / ".coflux" / "cas").keys())
        machine_b = set(BlobStore(consumer.root / ".coflux" / "cas").keys())
        store_a = BlobStore(producer.root / ".coflux" / "cas")
        big_blobs = [k for k in machine_a if store_a.size(k) > 2_000_000]
        assert len(big_blobs) == 1 and big_blobs[0] in machine_b
        assert BlobStore(server.data_dir / "blobs" / workspace.project).has(big_blobs[0])
    finally:
        producer.stop_agents()
        consumer.stop_agents()


def test_s16_symbolic_links_are_refused_and_leak_nothing(
    server: ServerProcess, workspace: Workspace, tmp_path: Path
) -> None:
    secret = tmp_path / "secret_sentinel"
    sentinel = os.urandom(32)
    secret.write_bytes(sentinel)
    workspace.write("producer.py", PRODUCER)
    workspace.start_agent("producer.py")
    submitted = workspace.cli(
        "submit", "producer.py", "leaky", json.dumps(str(secret)), "--wait", "--json"
    )
    assert submitted.returncode == 1
    shown = json.loads(submitted.stdout)
    error = shown["steps"][0]["executions"][0]["error"]
    assert error["type"] == "coflux.errors.AssetError"
    assert error["message"] == (
        f"can't persist data: leak is a symbolic link (to {str(secret)!r}); "
        "links aren't followed or recorded"
    )
    for root in (workspace.root / ".coflux", server.data_dir):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert sentinel not in path.read_bytes(), path


FLOWS = """
    import os
    import coflux as cf

    @cf.workflow()
    def publish() -> cf.Asset:
        os.makedirs("site/css")
        with open("site/index.html", "w") as f:
            f.write("<h1>hi</h1>")
        with open("site/css/main.css", "w") as f:
            f.write("h1 { color: teal }")
        return cf.persist_asset("site")
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


SITE = {"css/main.css": b"h1 { color: teal }", "index.html": b"<h1>hi</h1>"}


def test_s14_restore_from_the_server_then_from_the_local_store_offline(tmp_path: Path) -> None:
    with private_stack(tmp_path) as (server, ws):
        ws.write("flows.py", FLOWS)
        ws.start_agent("flows.py")
        run = ws.cli_json("submit", "flows.py", "publish", "--wait")
        ref = run["result"]["ref"]
        ws.stop_agents()

        # Another machine: nothing local, so everything comes from the server.
        other = Workspace(tmp_path / "laptop", ws.server, ws.project)
        other.root.mkdir()
        restored = other.cli_json("assets", "restore", ref, "--to", "out")
        assert restored == {
            "ref": ref,
            "to": str(other.root / "out"),
            "files": 2,
            "size": 29,
            "from": "server",
        }
        assert snapshot(other.root / "out") == SITE

        # Existing files need --force; nothing is touched without it.
        (other.root / "out" / "index.html").write_text("mine")
        again = other.cli("assets", "restore", ref, "--to", "out")
        assert again.returncode != 0 and again.stderr.strip() == (
            f"error: css/main.css and 1 more file(s) already exist in {other.root / 'out'}; "
            "pass --force to overwrite (or restore elsewhere)"
        )
        assert (other.root / "out" / "index.html").read_text() == "mine"
        other.cli("assets", "restore", ref, "--to", "out", "--force", check=True)
        assert snapshot(other.root / "out") == SITE

        # A local blob gone bad is set aside and fetched again, with a warning.
        store = BlobStore(other.root / ".coflux" / "cas")
        css = hash_bytes(SITE["css/main.css"])
        store.path(css).write_bytes(b"h1 { color: pink }")
        healed = other.cli("assets", "restore", ref, "--to", "healed")
        assert healed.returncode == 0, healed.stderr
        assert healed.stderr.strip() == (
            f"warning: can't restore css/main.css: blob {css} is corrupt: its content does not "
            "match its name; fetching it again from the server"
        )
        assert snapshot(other.root / "healed") == SITE
        assert store.get_bytes(css) == SITE["css/main.css"]

        # The server is gone: the local store has everything, so restores still work.
        server.stop()
        offline = other.cli_json("assets", "restore", ref, "--to", "offline")
        assert offline["from"] == "local"
        assert snapshot(other.root / "offline") == SITE
        shown = other.cli_json("assets", "show", ref)
        assert [e["path"] for e in shown["entries"]] == ["css/main.css", "index.html"]
        stats = other.cli_json("cache", "stats")
        assert stats["blobs"] == 3 and stats["indexed"] == {"results": 0, "assets": 1}
        assert stats["unreferenced_blobs"] == 0

        # An asset whose blobs are neither here nor reachable: one line, nothing written.
        missing = other.cli("assets", "restore", "a:" + "0" * 32, "--to", "nothing")
        assert missing.returncode != 0
        assert missing.stderr.startswith("error: can't reach the Coflux server")
        assert not (other.root / "nothing").exists()


BAD_PATHS = [
    "../x",
    "a/../../x",
    "a/./../../x",
    "/etc/x",
    "//x",
    "",
    ".",
    "a/",
    "a\x00b",
    "a\\b",
    "a\x07b",
    "x" * 4097,
    "a//b",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_s15_the_server_refuses_unsafe_manifests(workspace: Workspace, path: str) -> None:
    blob = "0" * 32
    entry = {"path": path, "mode": 0o644, "size": 1, "blobs": [blob]}
    response = httpx.post(
        f"{workspace.server}/api/projects/{workspace.project}/assets",
        json={"path": "x", "entries": [entry]},
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_manifest"
    assert "entry path" in response.json()["detail"]


def test_the_server_refuses_duplicates_files_inside_files_and_missing_blobs(
    workspace: Workspace,
) -> None:
    url = f"{workspace.server}/api/projects/{workspace.project}"
    data = b"content"
    key = hash_bytes(data)
    httpx.put(f"{url}/blobs/{key}", content=data).raise_for_status()

    def record(*paths: str) -> httpx.Response:
        entries = [{"path": p, "mode": 0o644, "size": 7, "blobs": [key]} for p in paths]
        return httpx.post(f"{url}/assets", json={"path": "x", "entries": entries})

    assert record("a/b", "a//b").status_code == 400
    duplicate = record("a", "a")
    assert (duplicate.status_code, duplicate.json()["detail"]) == (400, "entry 'a' appears twice")
    inside = record("a", "a/b")
    assert (inside.status_code, inside.json()["detail"]) == (
        400,
        "entry 'a/b' is inside the file 'a'",
    )
    ok = record("a/b", "c")
    assert ok.status_code == 201
    assert ok.json() == {
        "ref": "a:"
        + hash_bytes(encode([Entry("a/b", 0o644, 7, (key,)), Entry("c", 0o644, 7, (key,))])),
        "path": "x",
        "files": 2,
        "size": 14,
    }
    lacking = httpx.post(
        f"{url}/assets",
        json={
            "path": "x",
            "entries": [{"path": "z", "mode": 0o644, "size": 1, "blobs": ["1" * 32]}],
        },
    )
    assert lacking.status_code == 409
    assert lacking.json()["detail"].startswith("1 blob(s) of the asset aren't on the server")


def test_s14_blob_uploads_are_verified_and_never_replace_a_stored_blob(
    server: ServerProcess, workspace: Workspace
) -> None:
    url = f"{workspace.server}/api/projects/{workspace.project}/blobs"
    data = b"the real content"
    key = hash_bytes(data)
    wrong = httpx.put(f"{url}/{key}", content=b"something else")
    assert wrong.status_code == 400 and wrong.json()["code"] == "hash_mismatch"
    store = BlobStore(server.data_dir / "blobs" / workspace.project)
    assert not store.has(key)
    assert httpx.put(f"{url}/{key}", content=data).status_code == 201
    before = os.stat(store.path(key))
    assert httpx.put(f"{url}/{key}", content=data).status_code == 201
    after = os.stat(store.path(key))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list((store.root / "tmp").iterdir()) == []


def _crafted(ws: Workspace, entries: list[dict]) -> str:
    """A manifest put straight into the local store, bypassing every check."""
    document = {"format": 1, "entries": entries}
    key = BlobStore(ws.root / ".coflux" / "cas").put_bytes(json.dumps(document).encode())
    return "a:" + key


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/x", "a//b"])
def test_s15_a_crafted_local_manifest_is_refused_on_restore(
    workspace: Workspace, tmp_path: Path, path: str
) -> None:
    store = BlobStore(workspace.root / ".coflux" / "cas")
    key = store.put_bytes(b"evil")
    ref = _crafted(workspace, [{"path": path, "mode": 0o644, "size": 4, "blobs": [key]}])
    before = sorted(p.name for p in tmp_path.iterdir())
    result = workspace.cli("assets", "restore", ref, "--to", str(tmp_path / "dest"))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "entry path" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "x").exists()


def test_s15_restore_does_not_follow_a_link_already_in_the_target(
    workspace: Workspace, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "x").write_text("payload")
    store = BlobStore(workspace.root / ".coflux" / "cas")
    key, _, _ = persist(store, tmp_path, "source", None)
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    for force in ([], ["--force"]):
        result = workspace.cli("assets", "restore", "a:" + key, "--to", str(dest), *force)
        assert result.returncode != 0
        assert result.stderr.strip() == (
            "error: can't restore sub/x: sub in the target is a symbolic link or a file; "
            "it is not followed"
        )
        assert list(outside.iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["sub"]


def test_large_files_travel_in_pieces_with_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.mkdir()
    chunk = os.urandom(1024 * 1024)
    with open(source / "data.bin", "wb") as f:
        for i in range(PIECE_SIZE // len(chunk) * 2 + 3):  # two full pieces and a bit
            f.write(chunk[i:] + chunk[:i])
    store = BlobStore(tmp_path / "cas")
    key, entries, name = persist(store, tmp_path, "big", None)
    assert name == "big" and len(entries) == 1 and len(entries[0].blobs) == 3
    assert [store.size(b) for b in entries[0].blobs] == [PIECE_SIZE, PIECE_SIZE, 3 * 1024 * 1024]
    from coflux.assets import restore

    restore(store, entries, tmp_path / "copy")
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / "copy" / "data.bin") == digest(source / "data.bin")


FULL_DISK = """
import json, os, sys
from pathlib import Path
from coflux.assets import persist
from coflux.cache import BlobStore, hash_bytes
from coflux.errors import AssetError

source, cas = Path(sys.argv[1]), Path(sys.argv[2])
store = BlobStore(cas)
try:
    persist(store, source, "big", None)
    outcome = "persisted"
except AssetError as e:
    outcome = str(e)
small = persist(store, source, "small.txt", None)[0]
print(json.dumps({
    "outcome": outcome,
    "temporary": sorted(os.listdir(cas / "tmp")),
    "small": store.has(small),
    "blobs": sorted(store.keys()),
    "misnamed": [k for k in store.keys() if hash_bytes(store.path(k).read_bytes()) != k],
}))
"""


def _run_with_a_full_disk(tmp_path: Path, source: Path) -> tuple[dict, str]:
    """Run FULL_DISK with its store on a 2 MiB tmpfs (a user and mount namespace),
    or where that is refused, under a 2 MiB file-size limit."""
    import resource
    import shutil
    import signal
    import subprocess
    import sys

    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    cas = tmp_path / "cas"
    cas.mkdir()
    unshare = shutil.which("unshare")
    if unshare:
        mount = f"mount -t tmpfs -o size=2m tmpfs {cas} && exec {sys.executable} {script}"
        result = subprocess.run(
            [unshare, "-Urm", "sh", "-c", f'{mount} "$0" "$1"', str(source), str(cas)],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return json.loads(result.stdout), "No space left on device"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, 2 * 1024 * 1024))

    result = subprocess.run(
        [sys.executable, str(script), str(source), str(cas)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), "File too large"


def test_s13_a_full_disk_fails_cleanly_and_leaves_no_partial_blob(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "big").mkdir(parents=True)
    for i in range(2):  # over the 2 MiB of the disk, and each over the file-size limit
        (source / "big" / f"part-{i}.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (source / "small.txt").write_text("still fine")
    report, reason = _run_with_a_full_disk(tmp_path, source)
    assert report["outcome"].startswith("can't persist big: part-")
    assert report["outcome"].endswith(f": {reason}")
    assert report["temporary"] == []
    assert report["small"] is True
    # The failed persist gave its space back; what is stored is the small asset, whole.
    small_manifest, _, _ = persist(BlobStore(tmp_path / "elsewhere"), source, "small.txt", None)
    assert report["misnamed"] == []
    assert sorted(report["blobs"]) == sorted(
        [small_manifest, hash_bytes((source / "small.txt").read_bytes())]
    )


CACHED = """
    import os
    import coflux as cf

    @cf.task()
    def persist_copy(folder: str) -> cf.Asset:
        os.makedirs(folder)
        with open(os.path.join(folder, "rows.csv"), "w") as f:
            f.write("a,b\\n1,2\\n")
        return cf.persist_asset(folder)

    @cf.task(cache=True)
    def count_rows(data: cf.Asset) -> int:
        with open({journal!r}, "a") as f:
            f.write("counted\\n")
        where = data.restore()
        with open(os.path.join(where, "rows.csv")) as f:
            return len(f.readlines())

    @cf.workflow()
    def twice() -> list:
        first, second = persist_copy("one"), persist_copy("two")
        return [first == second, count_rows(first), count_rows(second)]
"""


def test_a_cache_key_over_an_asset_depends_on_its_content(
    workspace: Workspace, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    workspace.write("flows.py", CACHED.format(journal=str(journal)))
    workspace.start_agent("flows.py")
    run = workspace.cli_json("submit", "flows.py", "twice", "--wait")
    assert run["result"] == [True, 2, 2]
    assert journal.read_text() == "counted\n"
    states = [s["state"] for s in run["steps"] if s["target"] == "flows:count_rows"]
    assert states == ["succeeded", "cached"]


def test_a_server_killed_before_a_batch_is_durable_names_none_of_it(tmp_path: Path) -> None:
    """A batch upload's blobs are written and verified one by one, then fsynced
    and named together at its end. The server killed (exit 137) just before
    that has named none of them: they are temporary files, and the store holds
    no blob. Restarted, the same persist uploads them again, and the tree
    restores whole on the other machine."""
    with private_stack(tmp_path) as (server, ws):
        server.stop()
        server.env = {"COFLUX_FAILPOINTS": "blobs.before_batch_commit=exit"}
        server.start()
        producer, consumer = two_machines(server.url, ws.project, tmp_path)
        try:
            first = consumer.cli_json("submit", "consumer.py", "many", "8")
            assert server.process is not None
            assert server.process.wait(30) == 137
            store = BlobStore(server.data_dir / "blobs" / ws.project)
            # The 8 files of 1 MiB: one batch (under the 16 MiB upload group),
            # each blob complete and verified, none named.
            left = sorted((p.suffix, p.stat().st_size) for p in (store.root / "tmp").iterdir())
            assert (left, list(store.keys())) == ([(".part", 2**20)] * 8, [])

            server.env = {}
            server.start()
            with ws.client() as client:
                assert client.wait_for_run(first["id"], timeout=60)["state"] == "failed"
            run = consumer.cli_json("submit", "consumer.py", "many", "8", "--wait")
            assert run["state"] == "succeeded", run
            ref, produced, restored = run["result"]
            assert restored == produced and len(produced) == 8
            entries = decode(store.get_bytes(ref.removeprefix("a:")))
            assert sorted(e.size for e in entries) == [2**20] * 8
            for entry in entries:
                (blob,) = entry.blobs
                assert len(store.get_bytes(blob)) == 2**20  # whole and verified
        finally:
            producer.stop_agents()
            consumer.stop_agents()
