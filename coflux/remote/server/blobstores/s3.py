"""Blobs in S3-compatible object storage (AWS S3, MinIO, SeaweedFS, R2, ...).

A blob is the object ``PREFIX/PROJECT/ab/KEY``. The promises of the local
store hold here too, by S3's own rules and by what this module adds:

* Never partial: an object becomes visible only once its PUT (or its
  multipart upload's completion) has succeeded, so a dropped transfer leaves
  nothing under the key. Blobs the server carries itself are first written
  to a temporary file while hashed, and sent only once they match their key.
* Verified on read: every read hashes the content; a mismatch copies the
  object to ``PREFIX/quarantine/PROJECT/KEY.TIME``, deletes it (so an upload
  can put a good copy back) and raises ``BlobError``.
* Idempotent: a key already stored is never sent again (``missing``).

The client is boto3's, so the endpoint, region and credentials come from the
standard AWS settings. With a custom endpoint (``AWS_ENDPOINT_URL``), buckets
are addressed by path, which every S3-compatible server understands.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ....cache.keys import Hasher, hash_bytes, validate_key
from ....errors import BlobError
from . import StoreUnavailable

#: Blobs larger than this travel in parts of this size (S3's smallest part is 5 MiB).
MULTIPART_SIZE = 16 * 1024 * 1024
#: How long a presigned URL stays valid (seconds).
URL_LIFETIME = 3600
#: HEAD requests in flight at once when asking which blobs are missing.
CHECKS_AT_ONCE = 32
#: Blobs up to this size aren't checked before an upload: they are offered with a
#: conditional PUT (``If-None-Match: *``), which the store refuses (412) when it
#: has the key. Measured on SeaweedFS: a HEAD cost half a PUT of 100 KB, and a
#: persist of 1,000 new files checked each one twice (here and before the asset
#: is recorded); over this size, sending bytes already stored costs more.
UNCHECKED_SIZE = 256 * 1024
_READ_CHUNK = 1024 * 1024


def _client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        from ....errors import ConfigError

        raise ConfigError("an s3:// blob store needs boto3: pip install 'coflux[s3]'") from None
    session = boto3.session.Session()
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=CHECKS_AT_ONCE,
    )
    client = session.client("s3", config=config)
    if not client.meta.endpoint_url.endswith(".amazonaws.com"):
        client = session.client("s3", config=config.merge(Config(s3={"addressing_style": "path"})))
    return client


def _unavailable(e: Exception, what: str) -> StoreUnavailable:
    return StoreUnavailable(f"the blob store can't be reached ({what}: {type(e).__name__}: {e})")


def _is_missing(e: Exception) -> bool:
    response = getattr(e, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 or code in ("404", "NoSuchKey", "NotFound")


class S3Backend:
    def __init__(self, bucket: str, prefix: str, tmp: Path) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self.tmp = tmp
        self.client = _client()
        self.pool = ThreadPoolExecutor(CHECKS_AT_ONCE, thread_name_prefix="coflux-s3")

    def _base(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def project(self, name: str) -> S3Blobs:
        return S3Blobs(self, name)

    def projects(self) -> list[str]:
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._base("") + ("/" if self.prefix else ""), Delimiter="/"
        )
        try:
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                    if name != "quarantine":
                        found.append(name)
        except Exception as e:
            raise _unavailable(e, "listing projects") from None
        return sorted(found)


class S3Blobs:
    """One project's blobs in the bucket."""

    presigns = True
    unchecked_size = UNCHECKED_SIZE

    def __init__(self, backend: S3Backend, project: str) -> None:
        self.backend = backend
        self.project = project
        self.client = backend.client
        self.bucket = backend.bucket

    def object_key(self, key: str) -> str:
        validate_key(key)
        return self.backend._base(self.project, key[:2], key)

    # --- Names ---

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as e:
            if _is_missing(e):
                return None
            raise _unavailable(e, f"checking blob {key}") from None

    def has(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise BlobError(f"blob {key} is not in the store")
        return int(head["ContentLength"])

    def missing(self, keys: list[str]) -> list[str]:
        keys = list(dict.fromkeys(keys))
        present = list(self.backend.pool.map(self.has, keys))
        return [k for k, here in zip(keys, present, strict=True) if not here]

    # --- Writing (the bytes the server carries itself) ---

    def writer(self) -> S3Writer:
        return S3Writer(self)

    def put_bytes(self, data: bytes) -> str:
        key = hash_bytes(data)
        if not self.has(key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
            except Exception as e:
                raise _unavailable(e, f"storing blob {key}") from None
        return key

    def put_stream(self, chunks: Iterable[bytes], expected_key: str | None = None) -> str:
        writer = self.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit(expected_key)

    def upload_file(self, path: Path, key: str) -> None:
        """Send the file at ``path`` (already verified as ``key``), in parts when large."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_SIZE, multipart_chunksize=MULTIPART_SIZE
        )
        try:
            self.client.upload_file(str(path), self.bucket, self.object_key(key), Config=config)
        except Exception as e:
            raise _unavailable(e, f"storing blob {key}") from None

    # --- Reading ---

    def _get(self, key: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as e:
            if _is_missing(e):
                raise BlobError(f"blob {key} is not in the store") from None
            raise _unavailable(e, f"reading blob {key}") from None

    def get_bytes(self, key: str) -> bytes:
        response = self._get(key)
        try:
            data = response["Body"].read()
        except Exception as e:
            raise _unavailable(e, f"reading blob {key}") from None
        if hash_bytes(data) != key:
            raise self._corrupt(key, response.get("ETag"))
        return data

    def open_chunks(self, key: str) -> Iterator[bytes]:
        """Like ``BlobStore.open_chunks``: missing raises before any chunk, a
        mismatch after the last."""
        response = self._get(key)
        return self._chunks(key, response)

    def _chunks(self, key: str, response: Any) -> Iterator[bytes]:
        hasher = Hasher()
        body = response["Body"]
        try:
            for chunk in body.iter_chunks(_READ_CHUNK):
                hasher.update(chunk)
                yield chunk
        finally:
            body.close()
        if hasher.hexdigest() != key:
            raise self._corrupt(key, response.get("ETag"))

    def _corrupt(self, key: str, etag: str | None) -> BlobError:
        name = self.object_key(key)
        aside = self.backend._base("quarantine", self.project, f"{key}.{time.time_ns()}")
        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=aside, CopySource={"Bucket": self.bucket, "Key": name}
            )
            # Only the copy that was read goes: a good one put back meanwhile stays.
            head = self._head(key)
            if head is not None and (etag is None or head.get("ETag") == etag):
                self.client.delete_object(Bucket=self.bucket, Key=name)
        except Exception:  # the reader is told of the corruption either way
            pass
        return BlobError(f"blob {key} is corrupt: its content does not match its name")

    # --- Direct transfers ---

    def download_url(self, key: str) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=URL_LIFETIME,
        )

    def upload_plan(self, key: str, size: int) -> dict[str, Any]:
        """Presigned URLs to upload ``key`` of ``size`` bytes: one PUT, or the parts
        of a multipart upload (completed with ``complete``)."""
        name = self.object_key(key)
        if size <= UNCHECKED_SIZE:
            # Not checked first: stored only if absent (a store that ignores the
            # header stores the same bytes again, which changes nothing).
            params = {"Bucket": self.bucket, "Key": name, "IfNoneMatch": "*"}
            url = self.client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=URL_LIFETIME
            )
            return {"key": key, "url": url, "headers": {"If-None-Match": "*"}}
        if size <= MULTIPART_SIZE:
            url = self.client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=URL_LIFETIME
            )
            return {"key": key, "url": url}
        parts = -(-size // MULTIPART_SIZE)
        # An upload of this blob left unfinished (a cut connection, a killed
        # uploader, on any machine) is carried on: its stored parts aren't sent again.
        upload_id, stored = self._unfinished(key, name)
        if upload_id is None:
            try:
                upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)[
                    "UploadId"
                ]
            except Exception as e:
                raise _unavailable(e, f"starting the upload of blob {key}") from None
        lengths = [min(MULTIPART_SIZE, size - n * MULTIPART_SIZE) for n in range(parts)]
        return {
            "key": key,
            "upload_id": upload_id,
            "part_size": MULTIPART_SIZE,
            "parts": [
                self.client.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.bucket,
                        "Key": name,
                        "UploadId": upload_id,
                        "PartNumber": n,
                    },
                    ExpiresIn=URL_LIFETIME,
                )
                for n in range(1, parts + 1)
            ],
            # The ETag of each part already stored whole (null: to be sent).
            "stored": [
                stored[n][0] if stored.get(n, ("", -1))[1] == length else None
                for n, length in enumerate(lengths, 1)
            ],
        }

    def _unfinished(self, key: str, name: str) -> tuple[str | None, dict[int, tuple[str, int]]]:
        """The latest unfinished multipart upload of ``name``, and its stored parts
        (number: (ETag, size)); S3 lists a part only once its PUT succeeded."""
        try:
            listed = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=name)
            uploads = [u for u in listed.get("Uploads", []) if u["Key"] == name]
            if not uploads:
                return None, {}
            upload = max(uploads, key=lambda u: u["Initiated"])
            stored: dict[int, tuple[str, int]] = {}
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=name, UploadId=upload["UploadId"]
            )
            for page in pages:
                for part in page.get("Parts", []):
                    stored[int(part["PartNumber"])] = (part["ETag"], int(part["Size"]))
        except Exception as e:
            if _is_missing(e):  # aborted meanwhile (gc): a new upload is begun
                return None, {}
            raise _unavailable(e, f"resuming the upload of blob {key}") from None
        return upload["UploadId"], stored

    def complete(self, key: str, upload_id: str, etags: list[str], size: int) -> None:
        """Finish a multipart upload: only now does the object appear, whole."""
        name = self.object_key(key)
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except Exception as e:
            if getattr(e, "response", None):
                # Two uploaders carried on the same upload: the other completed it.
                if self._head(key) is not None and self.size(key) == size:
                    return
                from ....errors import InvalidInput

                raise InvalidInput(f"the upload of blob {key} can't be completed: {e}") from None
            raise _unavailable(e, f"completing blob {key}") from None
        if self.size(key) != size:
            self.delete(key)
            from ....errors import InvalidInput

            raise InvalidInput(f"blob {key} was uploaded with the wrong size; it was removed")

    # --- Housekeeping ---

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as e:
            raise _unavailable(e, f"deleting blob {key}") from None

    def entries(self) -> Iterator[tuple[str, int, float]]:
        """(key, size, modified) of every blob of the project."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.backend._base(self.project) + "/"
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].rsplit("/", 1)[-1]
                    try:
                        validate_key(key)
                    except Exception:
                        continue
                    yield key, int(item["Size"]), item["LastModified"].timestamp()
        except Exception as e:
            raise _unavailable(e, "listing blobs") from None

    def abort_stale_uploads(self, before: float) -> int:
        """Abort multipart uploads begun before ``before`` (a client that died
        mid-upload leaves its parts, which the store keeps until aborted)."""
        aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.backend._base(self.project) + "/"
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() < before:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        except Exception as e:
            raise _unavailable(e, "listing unfinished uploads") from None
        return aborted

    def keys(self) -> Iterator[str]:
        for key, _, _ in self.entries():
            yield key


class S3Writer:
    """A blob the server carries itself: written to a temporary file while hashed,
    and sent to the bucket only once it matches its key (``BlobWriter``'s methods)."""

    def __init__(self, blobs: S3Blobs) -> None:
        self.blobs = blobs
        blobs.backend.tmp.mkdir(parents=True, exist_ok=True)
        self._path = blobs.backend.tmp / f"{uuid.uuid4().hex}.s3part"
        self._file = open(self._path, "wb")  # noqa: SIM115 - closed by commit or abort
        self._hasher = Hasher()
        self.size = 0
        self.created = False
        self._done = False

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        try:
            self._hasher.update(chunk)
            self._file.write(chunk)
        except BaseException:
            self.abort()
            raise
        self.size += len(chunk)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._file.close()
        self._path.unlink(missing_ok=True)

    def commit(self, expected_key: str | None = None) -> str:
        try:
            self._file.close()
            key = self._hasher.hexdigest()
            if expected_key is not None and key != expected_key:
                raise BlobError(f"content does not match key {expected_key}: it hashes to {key}")
            if not self.blobs.has(key):
                self.blobs.upload_file(self._path, key)
                self.created = True
        finally:
            self._done = True
            self._path.unlink(missing_ok=True)
        return key


def remove_stale(tmp: Path, older_than: float = 3600.0) -> None:
    """Temporary files of writes a crash interrupted."""
    cutoff = time.time() - older_than
    for path in tmp.glob("*.s3part") if tmp.is_dir() else []:
        if path.stat().st_mtime < cutoff:
            os.unlink(path)
