"""The blob store on real files: round trips, key validation, corruption, atomicity, limits."""

from __future__ import annotations

import errno
import filecmp
import json
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from coflux.cache import BlobStore, hash_bytes, validate_key
from coflux.cache.keys import HASH_HEX_LENGTH, Hasher
from coflux.errors import BlobError, InvalidInput

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]

HELLO = b"hello"
HELLO_KEY = "b5e9c1ad071b3e7fc779cfaa5e523818"
EMPTY_KEY = "99aa06d3014798d86001c324468d497f"

INVALID_KEYS = [
    "../x",
    "ABC",
    "z" * 32,
    "a" * 31,
    "",
    "A" * 32,
    "a" * 33,
    HELLO_KEY + "\n",
    "../" + HELLO_KEY[3:],
]


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "cas")


def pattern(size: int) -> bytes:
    """Deterministic, non-repeating-looking content of ``size`` bytes."""
    block = bytes(range(251)) * 4
    return (block * (size // len(block) + 1))[:size]


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- Keys ---


def test_hash_bytes_is_xxh3_128_hex() -> None:
    assert HASH_HEX_LENGTH == 32
    assert hash_bytes(HELLO) == HELLO_KEY
    assert hash_bytes(b"") == EMPTY_KEY


def test_hasher_matches_hash_bytes_across_chunks() -> None:
    hasher = Hasher()
    hasher.update(b"he")
    hasher.update(memoryview(b"ll"))
    hasher.update(bytearray(b"o"))
    assert hasher.hexdigest() == HELLO_KEY


def test_validate_key_returns_a_valid_key() -> None:
    assert validate_key(HELLO_KEY) == HELLO_KEY


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_validate_key_rejects_malformed_keys(key: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_key(key)
    assert str(raised.value) == (f"invalid blob key {key!r}: expected 32 lowercase hex characters")


def test_validate_key_bounds_the_key_shown_in_the_message() -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_key("x" * 1000)
    assert str(raised.value) == (
        f"invalid blob key {'x' * 80!r}: expected 32 lowercase hex characters"
    )


@pytest.mark.parametrize("key", INVALID_KEYS)
@pytest.mark.parametrize("method", ["has", "path", "get_bytes", "size", "delete", "open_chunks"])
def test_every_key_taking_method_rejects_malformed_keys(
    store: BlobStore, key: str, method: str
) -> None:
    with pytest.raises(InvalidInput):
        getattr(store, method)(key)
    assert not store.root.exists()


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_copy_to_and_put_stream_reject_malformed_keys(
    store: BlobStore, tmp_path: Path, key: str
) -> None:
    with pytest.raises(InvalidInput):
        store.copy_to(key, tmp_path / "out")
    with pytest.raises(InvalidInput):
        store.put_stream([HELLO], expected_key=key)
    assert not store.root.exists()
    assert listing(tmp_path) == []


# --- Round trips ---


def test_put_bytes_round_trip_and_layout(store: BlobStore) -> None:
    assert not store.root.exists()
    key = store.put_bytes(HELLO)
    assert key == HELLO_KEY
    assert store.path(key) == store.root / "b5" / "e9" / HELLO_KEY
    assert store.path(key).read_bytes() == HELLO
    assert store.has(key) is True
    assert store.size(key) == 5
    assert store.get_bytes(key) == HELLO
    assert listing(store.root / "tmp") == []


def test_empty_blob_round_trip(store: BlobStore) -> None:
    assert store.put_bytes(b"") == EMPTY_KEY
    assert store.get_bytes(EMPTY_KEY) == b""
    assert list(store.open_chunks(EMPTY_KEY)) == []
    assert store.size(EMPTY_KEY) == 0


def test_put_file_round_trip(store: BlobStore, tmp_path: Path) -> None:
    data = pattern(3 * MIB + 17)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    key = store.put_file(source)
    assert key == xxhash.xxh3_128_hexdigest(data)
    assert store.get_bytes(key) == data
    assert source.read_bytes() == data
    assert listing(store.root / "tmp") == []


def test_put_stream_round_trip_with_and_without_expected_key(store: BlobStore) -> None:
    assert store.put_stream([b"he", b"", b"llo"]) == HELLO_KEY
    assert store.put_stream(iter([b"hel", b"lo"]), expected_key=HELLO_KEY) == HELLO_KEY
    assert store.get_bytes(HELLO_KEY) == HELLO
    assert list(store.keys()) == [HELLO_KEY]


def test_open_chunks_streams_in_chunks(store: BlobStore) -> None:
    data = pattern(10)
    key = store.put_bytes(data)
    assert list(store.open_chunks(key, chunk_size=4)) == [data[:4], data[4:8], data[8:]]
    with pytest.raises(ValueError):
        store.open_chunks(key, chunk_size=0)


def test_same_content_same_key_and_second_put_leaves_file_untouched(
    store: BlobStore, tmp_path: Path
) -> None:
    key = store.put_bytes(HELLO)
    final = store.path(key)
    # An old mtime makes any rewrite visible, however fast the second put is.
    os.utime(final, ns=(1_000_000_000, 1_000_000_000))
    before = final.stat()

    source = tmp_path / "hello.txt"
    source.write_bytes(HELLO)
    assert store.put_bytes(HELLO) == key
    assert store.put_file(source) == key
    assert store.put_stream([b"hel", b"lo"]) == key
    assert store.put_stream([HELLO], expected_key=key) == key

    after = final.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, 1_000_000_000, 5)
    assert listing(store.root / "tmp") == []


def test_copy_to_produces_an_identical_file_and_replaces_dest(
    store: BlobStore, tmp_path: Path
) -> None:
    data = pattern(2 * MIB + 3)
    key = store.put_bytes(data)
    dest = tmp_path / "out" / "copy.bin"
    store.copy_to(key, dest)
    assert filecmp.cmp(store.path(key), dest, shallow=False) is True
    assert dest.read_bytes() == data

    dest.write_bytes(b"stale content")
    store.copy_to(key, dest)
    assert dest.read_bytes() == data
    assert listing(dest.parent) == ["copy.bin"]


# --- Missing and corrupt blobs ---


def test_missing_blob(store: BlobStore, tmp_path: Path) -> None:
    message = f"blob {HELLO_KEY} is not in the store"
    assert store.has(HELLO_KEY) is False
    for read in (
        store.get_bytes,
        store.size,
        store.open_chunks,
        lambda key: store.copy_to(key, tmp_path / "out"),
    ):
        with pytest.raises(BlobError) as raised:
            read(HELLO_KEY)
        assert str(raised.value) == message
    assert listing(tmp_path) == []


def corrupt_message(key: str) -> str:
    return f"blob {key} is corrupt: its content does not match its name"


def test_flipped_byte_is_detected_and_quarantined(store: BlobStore) -> None:
    data = pattern(1000)
    key = store.put_bytes(data)
    final = store.path(key)
    damaged = bytearray(data)
    damaged[500] ^= 0x01
    final.write_bytes(damaged)

    with pytest.raises(BlobError) as raised:
        store.get_bytes(key)
    assert str(raised.value) == corrupt_message(key)
    assert final.exists() is False
    assert store.has(key) is False
    quarantined = list((store.root / "quarantine").iterdir())
    assert len(quarantined) == 1
    name, _, stamp = quarantined[0].name.partition(".")
    assert name == key
    assert stamp.isdigit() is True
    assert quarantined[0].read_bytes() == bytes(damaged)

    # Once quarantined, a good copy can be stored again.
    assert store.put_bytes(data) == key
    assert store.get_bytes(key) == data


def test_truncated_file_is_detected(store: BlobStore) -> None:
    data = pattern(1000)
    key = store.put_bytes(data)
    store.path(key).write_bytes(data[:999])
    with pytest.raises(BlobError) as raised:
        store.get_bytes(key)
    assert str(raised.value) == corrupt_message(key)
    assert store.has(key) is False
    assert len(listing(store.root / "quarantine")) == 1


def test_open_chunks_detects_corruption_at_the_end(store: BlobStore) -> None:
    data = pattern(10)
    key = store.put_bytes(data)
    store.path(key).write_bytes(b"X" + data[1:])
    received: list[bytes] = []
    with pytest.raises(BlobError) as raised:
        for chunk in store.open_chunks(key, chunk_size=4):
            received.append(chunk)
    assert str(raised.value) == corrupt_message(key)
    assert received == [b"X" + data[1:4], data[4:8], data[8:]]
    assert store.has(key) is False
    assert len(listing(store.root / "quarantine")) == 1


def test_copy_to_of_a_corrupt_blob_leaves_dest_untouched(store: BlobStore, tmp_path: Path) -> None:
    data = pattern(3 * MIB)
    key = store.put_bytes(data)
    store.path(key).write_bytes(data[:-1] + b"\x00")
    dest = tmp_path / "out" / "copy.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    with pytest.raises(BlobError) as raised:
        store.copy_to(key, dest)
    assert str(raised.value) == corrupt_message(key)
    assert dest.read_bytes() == b"previous"
    assert listing(dest.parent) == ["copy.bin"]


def test_a_damaged_file_of_another_size_is_replaced_by_the_next_put(store: BlobStore) -> None:
    key = store.put_bytes(HELLO)
    store.path(key).write_bytes(b"hell")
    assert store.put_bytes(HELLO) == key
    assert store.get_bytes(key) == HELLO


def test_put_stream_with_wrong_expected_key_leaves_nothing(store: BlobStore) -> None:
    wrong = "0" * 32
    with pytest.raises(BlobError) as raised:
        store.put_stream([b"hel", b"lo"], expected_key=wrong)
    assert str(raised.value) == f"content does not match key {wrong}: it hashes to {HELLO_KEY}"
    assert store.has(wrong) is False
    assert store.has(HELLO_KEY) is False
    assert listing(store.root / "tmp") == []
    assert listing(store.root) == ["tmp"]


def test_a_failing_chunk_source_leaves_nothing(store: BlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        store.put_stream(chunks())
    assert listing(store.root) == ["tmp"]
    assert listing(store.root / "tmp") == []


# --- Concurrency and limits ---


def test_concurrent_writers_of_one_blob_yield_one_correct_file(store: BlobStore) -> None:
    data = pattern(MIB)
    expected = xxhash.xxh3_128_hexdigest(data)
    start = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            start.wait()
            results.append(store.put_bytes(data))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert results == [expected] * 8
    assert list(store.keys()) == [expected]
    assert store.get_bytes(expected) == data
    assert listing(store.root / "tmp") == []


def test_put_file_of_64_mib_keeps_memory_small(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    size = 64 * MIB
    with open(source, "wb") as f:
        # Sparse, with markers so the content isn't one long run of zeros.
        for offset in range(0, size, 7 * MIB):
            f.seek(offset)
            f.write(offset.to_bytes(8, "big"))
        f.truncate(size)
    expected = xxhash.xxh3_128()
    with open(source, "rb") as f:
        while chunk := f.read(MIB):
            expected.update(chunk)

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        key = store.put_file(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * MIB
    assert key == expected.hexdigest()
    assert store.size(key) == size
    assert filecmp.cmp(source, store.path(key), shallow=False) is True


FILE_SIZE_LIMIT_SCRIPT = textwrap.dedent(
    """
    import errno, json, os, resource, signal, sys
    from pathlib import Path
    from coflux.cache import BlobStore

    root, source = Path(sys.argv[1]), Path(sys.argv[2])
    store = BlobStore(root)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, resource.RLIM_INFINITY))
    outcome = {}
    for name, put in (
        ("put_bytes", lambda: store.put_bytes(source.read_bytes())),
        ("put_file", lambda: store.put_file(source)),
        ("put_stream", lambda: store.put_stream([source.read_bytes()])),
    ):
        try:
            put()
            outcome[name] = "stored"
        except OSError as e:
            outcome[name] = errno.errorcode[e.errno]
    print(json.dumps(outcome))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_over_the_file_size_limit_leaves_nothing(tmp_path: Path) -> None:
    data = pattern(5 * MIB)
    source = tmp_path / "five.bin"
    source.write_bytes(data)
    root = tmp_path / "cas"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }

    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT_SCRIPT, str(root), str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    efbig = errno.errorcode[errno.EFBIG]
    assert json.loads(done.stdout) == {"put_bytes": efbig, "put_file": efbig, "put_stream": efbig}
    store = BlobStore(root)
    assert store.has(xxhash.xxh3_128_hexdigest(data)) is False
    assert listing(root) == ["tmp"]
    assert listing(root / "tmp") == []


# --- Housekeeping ---


def test_keys_total_size_and_delete(store: BlobStore) -> None:
    assert list(store.keys()) == []
    assert store.total_size() == 0
    a = store.put_bytes(b"a" * 10)
    b = store.put_bytes(b"b" * 20)
    # Strays a walk must skip: a misplaced key, a bad name, a temp and a quarantined file.
    misplaced = store.root / "00" / "00" / HELLO_KEY
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(HELLO)
    (store.path(a).parent / "notes.txt").write_bytes(b"x")
    (store.root / "tmp" / "leftover.part").write_bytes(b"x")
    (store.root / "quarantine").mkdir()
    (store.root / "quarantine" / f"{HELLO_KEY}.1").write_bytes(HELLO)

    assert list(store.keys()) == sorted([a, b])
    assert store.total_size() == 30

    store.delete(a)
    store.delete(a)
    assert store.has(a) is False
    assert list(store.keys()) == [b]
    assert store.total_size() == 20


def test_clean_temp_removes_only_stale_files(store: BlobStore) -> None:
    assert store.clean_temp() == 0
    tmp = store.root / "tmp"
    tmp.mkdir(parents=True)
    stale = tmp / "stale.part"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    fresh = tmp / "fresh.part"
    fresh.write_bytes(b"y")

    assert store.clean_temp() == 1
    assert listing(tmp) == ["fresh.part"]
    assert store.clean_temp(older_than=0) == 1
    assert listing(tmp) == []
