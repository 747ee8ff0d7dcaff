"""S3-compatible BlobStore (boto3): blobs at <prefix>blobs/<alg>/<hex>, uploads under <prefix>_uploads/<id>/.

An upload is a multipart upload plus a small state object (`state`: size, resumable SHA-256 state,
multipart id, parts and their ETags, the pending tail) rewritten after every append, so the next
chunk may land on any replica: it reads the state, continues the hash from it and adds parts. S3
parts other than the last must be at least 5 MiB while the HTTP layer hands over ~4 MiB batches,
so bytes below PART_SIZE wait in one `pending-<n>` object until enough have arrived for a part.

Nothing is visible under blobs/ before the digest was verified: the multipart upload completes into
the upload's own key only after the saved hash state matched, and a server-side copy then puts
it in place (no partial object is ever at a blob key). An aborted, failed or expired upload is
deleted with its multipart upload aborted. Mutual exclusion between replicas is the upload row's
claim (UploadService); within a process the driver refuses a second writer like the others.

The client is chosen by measurement (bench/README.md, "S3 client").
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from dockyard.storage.base import DigestMismatch, UploadBusy, UploadNotFound, UploadOffsetMismatch, put_by_upload
from dockyard.storage.hashing import DEFAULT_ALGORITHM, resumable, resume

PART_SIZE = 8 * 1024 * 1024  # >= S3's 5 MiB minimum; 10,000 parts make 80 GB the largest blob
READ_CHUNK = 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def _missing(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    return str(err.get("Code")) in _MISSING or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404


@dataclass
class _State:
    size: int = 0
    hash_state: bytes | None = None  # resumable SHA-256 over bytes [0, size); None: recompute
    upload: str | None = None  # the multipart upload id, once the first part went
    parts: list[dict[str, Any]] = field(default_factory=list)  # {"PartNumber", "ETag", "Size"}
    pending: str | None = None  # key of the object holding the bytes after the last part
    pending_size: int = 0

    def dumps(self) -> bytes:
        d = self.__dict__ | {"hash_state": base64.b64encode(self.hash_state).decode() if self.hash_state else None}
        return json.dumps(d).encode()

    @classmethod
    def loads(cls, raw: bytes) -> _State:
        d = json.loads(raw)
        hs = d.pop("hash_state")
        return cls(hash_state=base64.b64decode(hs) if hs else None, **d)


def parse_s3_url(url: str) -> tuple[str, str]:
    """s3://bucket/optional/prefix -> (bucket, 'optional/prefix/')."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"storage URL {url!r} names no bucket")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        redirect_expiry: int | None = None,
        session: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.redirect_expiry = redirect_expiry  # seconds a presigned GET URL lives; None: no redirects
        # Path-style for a custom endpoint (MinIO, Ceph, moto: bucket names need no DNS there).
        config = Config(
            signature_version="s3v4",  # presigned URLs too (boto3 would presign SigV2 in us-east-1)
            max_pool_connections=32,
            retries={"mode": "standard"},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        # Credentials: boto3's standard chain (environment, profiles, instance roles) unless a session is given.
        self.client = (session or boto3.session.Session()).client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        self._transfer = TransferConfig(multipart_threshold=5 * 1024**3, multipart_chunksize=512 * 1024**2)
        self._busy: set[str] = set()
        self._busy_guard = threading.Lock()
        self._tails: dict[str, tuple[str, bytes]] = {}  # upload -> (pending key, its bytes): saves a GET

    # --- keys -------------------------------------------------------------------------------
    def _key(self, digest: str) -> str:
        algorithm, encoded = digest.split(":", 1)
        return f"{self.prefix}blobs/{algorithm}/{encoded}"

    def _upload_dir(self, upload_id: str) -> str:
        if "/" in upload_id or not upload_id:
            raise UploadNotFound(upload_id)
        return f"{self.prefix}_uploads/{upload_id}/"

    # --- blobs ------------------------------------------------------------------------------
    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def stat(self, digest: str) -> int | None:
        head = self._head(self._key(digest))
        return None if head is None else int(head["ContentLength"])

    def open_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        kw: dict[str, Any] = {}
        if start or end is not None:
            if end is not None and end <= start:
                return iter(())
            kw["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(digest), **kw)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(digest) from None
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return iter(())
            raise

        def gen() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(READ_CHUNK)
            finally:
                body.close()

        return gen()

    def local_path(self, digest: str) -> str | None:
        return None

    def redirect_url(self, digest: str) -> str | None:
        if not self.redirect_expiry:
            return None
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(digest)}, ExpiresIn=self.redirect_expiry
        )
        return url

    def delete(self, digest: str) -> bool:
        key = self._key(digest)
        if self._head(key) is None:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def list_digests(self) -> Iterator[str]:
        root = f"{self.prefix}blobs/"
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root):
            for obj in page.get("Contents", []):
                algorithm, _, encoded = obj["Key"][len(root) :].partition("/")
                if encoded and "/" not in encoded:
                    yield f"{algorithm}:{encoded}"

    def modified_at(self, digest: str) -> float | None:
        head = self._head(self._key(digest))
        return None if head is None else float(head["LastModified"].timestamp())

    def put(self, digest: str, chunks: Iterable[bytes]) -> int:
        return put_by_upload(self, digest, chunks)

    # --- uploads ----------------------------------------------------------------------------
    @contextmanager
    def _claimed(self, upload_id: str) -> Iterator[_State]:
        with self._busy_guard:
            if upload_id in self._busy:
                raise UploadBusy(upload_id)
            self._busy.add(upload_id)
        try:
            yield self._state(upload_id)
        finally:
            with self._busy_guard:
                self._busy.discard(upload_id)

    def _state(self, upload_id: str) -> _State:
        try:
            raw = self.client.get_object(Bucket=self.bucket, Key=self._upload_dir(upload_id) + "state")["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                raise UploadNotFound(upload_id) from None
            raise
        return _State.loads(raw)

    def _save(self, upload_id: str, state: _State) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._upload_dir(upload_id) + "state", Body=state.dumps())

    def create_upload(self, upload_id: str) -> None:
        hasher = resumable()
        self._save(upload_id, _State(hash_state=hasher.export() if hasher else None))

    def upload_size(self, upload_id: str) -> int:
        return self._state(upload_id).size

    def _pending_bytes(self, upload_id: str, state: _State) -> bytes:
        if not state.pending:
            return b""
        cached = self._tails.get(upload_id)
        if cached is not None and cached[0] == state.pending:
            return cached[1]
        return bytes(self.client.get_object(Bucket=self.bucket, Key=state.pending)["Body"].read())

    def _upload_part(self, upload_id: str, state: _State, data: bytes) -> None:
        if state.upload is None:
            state.upload = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self._upload_dir(upload_id) + "data"
            )["UploadId"]
        number = len(state.parts) + 1  # from the saved state: a retried append overwrites its own part
        etag = self.client.upload_part(
            Bucket=self.bucket,
            Key=self._upload_dir(upload_id) + "data",
            UploadId=state.upload,
            PartNumber=number,
            Body=data,
        )["ETag"]
        state.parts.append({"PartNumber": number, "ETag": etag, "Size": len(data)})

    def append_upload(self, upload_id: str, offset: int, chunks: Iterable[bytes]) -> int:
        with self._claimed(upload_id) as state:
            if state.size != offset:
                raise UploadOffsetMismatch(state.size, offset)
            old_pending = state.pending
            hasher = resume(state.hash_state)
            buf = bytearray(self._pending_bytes(upload_id, state))
            # Nothing below is saved until the state object is: an append that fails half-way leaves
            # the saved state as it was (a part it uploaded is overwritten by the next attempt).
            for chunk in chunks:
                if hasher is not None:
                    hasher.update(chunk)
                buf += chunk
                state.size += len(chunk)
                if len(buf) >= PART_SIZE:
                    self._upload_part(upload_id, state, bytes(buf))
                    buf.clear()
            state.pending, state.pending_size = None, 0
            if buf:
                state.pending = f"{self._upload_dir(upload_id)}pending-{uuid.uuid4().hex}"
                state.pending_size = len(buf)
                self.client.put_object(Bucket=self.bucket, Key=state.pending, Body=bytes(buf))
                self._tails[upload_id] = (state.pending, bytes(buf))
            else:
                self._tails.pop(upload_id, None)
            state.hash_state = hasher.export() if hasher is not None else None
            self._save(upload_id, state)
            if old_pending and old_pending != state.pending:
                self.client.delete_object(Bucket=self.bucket, Key=old_pending)
            return state.size

    def commit_upload(self, upload_id: str, digest: str) -> int:
        algorithm = digest.split(":", 1)[0]
        with self._claimed(upload_id) as state:
            tail = self._pending_bytes(upload_id, state)
            data_key = self._upload_dir(upload_id) + "data"
            hasher = resume(state.hash_state) if algorithm == DEFAULT_ALGORITHM else None
            if hasher is not None:  # verified from the saved state, before anything is assembled
                self._verify(upload_id, state, digest, f"{algorithm}:{hasher.hexdigest()}")
            elif state.upload is None:
                self._verify(upload_id, state, digest, f"{algorithm}:{hashlib.new(algorithm, tail).hexdigest()}")
            target = self._key(digest)
            if state.upload is not None and (hasher is None or self._head(target) is None):
                if tail:
                    self._upload_part(upload_id, state, tail)
                parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in state.parts]
                # S3 checks every ETag: bytes other than those hashed cannot be assembled.
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=data_key, UploadId=state.upload, MultipartUpload={"Parts": parts}
                )
                state.upload = None
                if hasher is None:  # no saved state for this algorithm: read the assembled bytes back
                    self._verify(upload_id, state, digest, self._hash_object(data_key, algorithm))
            if self._head(target) is None:  # a stored blob is never rewritten
                if state.parts:
                    self.client.copy(
                        {"Bucket": self.bucket, "Key": data_key}, self.bucket, target, Config=self._transfer
                    )
                else:
                    self.client.put_object(Bucket=self.bucket, Key=target, Body=tail)
            self._discard(upload_id, state)
            return state.size

    def _verify(self, upload_id: str, state: _State, expected: str, actual: str) -> None:
        if actual != expected:
            self._discard(upload_id, state)
            raise DigestMismatch(expected, actual)

    def _hash_object(self, key: str, algorithm: str) -> str:
        hasher = hashlib.new(algorithm)
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(READ_CHUNK):
            hasher.update(chunk)
        return f"{algorithm}:{hasher.hexdigest()}"

    def _discard(self, upload_id: str, state: _State | None) -> None:
        self._tails.pop(upload_id, None)
        root = self._upload_dir(upload_id)
        if state is not None and state.upload is not None:
            self._abort(root + "data", state.upload)
        # Multipart uploads an unsaved append may have started, and every object of the upload:
        # listings of this one upload's prefix, never of the bucket.
        listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=root)
        for mpu in listing.get("Uploads", []):
            self._abort(mpu["Key"], mpu["UploadId"])
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def _abort(self, key: str, mpu: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=mpu)
        except ClientError as exc:
            if not _missing(exc):
                raise

    def delete_upload(self, upload_id: str) -> None:
        try:
            state: _State | None = self._state(upload_id)
        except UploadNotFound:
            state = None
        self._discard(upload_id, state)
