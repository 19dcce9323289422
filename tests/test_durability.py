"""Every acknowledgement means stored: the server's side (scenarios S28-S33 of
the reliability document). Each test injects its fault for real: a small
tmpfs for a full disk, values PostgreSQL refuses, a blob deleted from both
stores, a short agent timeout, a server killed with ``kill -9``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess

#: A workflow of one parameter, registered without an agent.
MANIFEST = {
    "environment": "production",
    "repository": "m",
    "targets": [
        {
            "name": "w",
            "type": "workflow",
            "parameters": [
                {"name": "x", "annotation": None, "default": None, "kind": "positional"}
            ],
        }
    ],
}


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (needs root; skipped otherwise)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"can't mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def new_project(server: ServerProcess) -> httpx.Client:
    project = f"t{uuid.uuid4().hex[:12]}"
    httpx.post(f"{server.url}/api/projects", json={"name": project}).raise_for_status()
    client = httpx.Client(base_url=f"{server.url}/api/projects/{project}", timeout=30)
    client.post("/manifests", json=MANIFEST).raise_for_status()
    return client


def submit(client: httpx.Client, data: Any) -> httpx.Response:
    body = {
        "environment": "production",
        "repository": "m",
        "target": "w",
        "arguments": [{"format": "json", "size": 1, "data": data}],
    }
    return client.post("/runs", json=body)


def run_ids(client: httpx.Client) -> set[str]:
    response = client.get("/runs", params={"environment": "production", "limit": 10000})
    assert response.status_code == 200, response.text
    return {run["id"] for run in response.json()}


def test_s28_a_full_disk_refuses_what_it_cannot_store_and_keeps_what_it_acknowledged(
    tmp_path: Path,
) -> None:
    """60 submissions of 400 KB to a server whose data is on an 8 MiB tmpfs:
    each is answered 201 (stored) or 507 (refused). Reads keep working while
    the disk is full; once space is freed, writes are accepted again without a
    restart; after ``kill -9`` and a restart exactly the acknowledged runs exist."""
    with contextlib.ExitStack() as stack:
        small = stack.enter_context(small_filesystem(tmp_path / "small", "8m"))
        filler = small / "filler"
        filler.write_bytes(b"\0" * (2 * 1024 * 1024))
        server = ServerProcess(small / "data").start()
        try:
            client = new_project(server)
            stack.callback(client.close)
            codes: list[int] = []
            acknowledged: set[str] = set()
            for i in range(60):
                response = submit(client, f"{i:03}" + "x" * 400_000)
                codes.append(response.status_code)
                if response.status_code == 201:
                    acknowledged.add(response.json()["id"])
                else:
                    assert response.json()["code"] == "storage_full", response.text
            assert set(codes) == {201, 507}, codes
            # Refused ones are refused from the first on: the disk stays full.
            first_refused = codes.index(507)
            assert codes[first_refused:] == [507] * (60 - first_refused)
            assert len(acknowledged) == first_refused
            # Reads are served while the disk is full.
            assert run_ids(client) == acknowledged
            assert httpx.get(f"{server.url}/api/health").status_code == 200

            filler.unlink()  # space is back: writes are accepted again, no restart
            response = submit(client, "after")
            assert response.status_code == 201, response.text
            acknowledged.add(response.json()["id"])

            server.kill()
            server.start()
            assert run_ids(client) == acknowledged
            log = server.log_path.read_text()
            assert "Traceback" not in log
        finally:
            server.stop()
            with contextlib.suppress(OSError):
                os.unlink(server.log_path)
