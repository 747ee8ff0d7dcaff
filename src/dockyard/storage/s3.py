"""S3-compatible BlobStore (boto3): blobs at <prefix>blobs/<alg>/<hex>, uploads under <prefix>_uploads/<id>/.

An upload is a multipart upload at `_uploads/<id>/data`; where it stands (size, resumable SHA-256
state, multipart id, parts and their ETags, the pending tail) is the `UploadState` each call returns
and the caller keeps in the upload's database row, so the next chunk may land on any replica: it is
handed the state, continues the hash from it and adds parts, with no bookkeeping read from the bucket.
S3 parts other than the last must be at least 5 MiB: appends are asked for whole parts
(`append_bytes`, the HTTP layer's batch size), each of which goes up as one part as it is; only a
remainder below MIN_PART waits in a `pending-<n>` object, joined to the next append's bytes or, at
commit, copied server-side into the last part (or to the blob key) rather than sent again.

Objects a state refers to are never changed or removed until a state without them has been kept:
a superseded pending object is listed in the new state's `stale` and deleted by the next call that is
given that state (and every object of the upload when it is committed or deleted).

Nothing is visible under blobs/ before the digest was verified: the multipart upload completes into
the upload's own key only after the saved hash state matched, and a server-side copy then puts
it in place (no partial object is ever at a blob key). An aborted, failed or expired upload is
deleted with its multipart upload aborted. Mutual exclusion between replicas is the upload row's
claim (UploadService); within a process the driver refuses a second writer like the others.

The client is chosen by measurement (bench/README.md, "S3 client").
"""

from __future__ import annotations

import base64
import copy
import hashlib
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from dockyard.storage.base import DigestMismatch, UploadBusy, UploadNotFound, UploadState, put_by_upload
from dockyard.storage.hashing import DEFAULT_ALGORITHM, resumable, resume

PART_SIZE = 8 * 1024 * 1024  # the part an append aims for; 10,000 parts make 80 GB the largest blob
MIN_PART = 5 * 1024 * 1024  # S3's minimum for every part but the last
READ_CHUNK = 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def _missing(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    return str(err.get("Code")) in _MISSING or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404


@dataclass
class _State:
    """The driver's part of an UploadState (`UploadState.driver`)."""

    hash_state: str | None = None  # base64 resumable SHA-256 over bytes [0, size); None: recompute
    upload: str | None = None  # the multipart upload id, once the first part went
    parts: list[dict[str, Any]] = field(default_factory=list)  # {"PartNumber", "ETag", "Size"}
    pending: str | None = None  # key of the object holding the bytes after the last part
    pending_size: int = 0
    pending_etag: str | None = None  # copies of it are conditional on this: exactly the bytes hashed
    stale: list[str] = field(default_factory=list)  # superseded pending objects, to delete

    @classmethod
    def of(cls, state: UploadState) -> _State:
        known = cls.__dataclass_fields__  # a deep copy: the given state must stay as it was
        return cls(**{k: copy.deepcopy(v) for k, v in state.driver.items() if k in known})

    def hasher_state(self) -> bytes | None:
        return base64.b64decode(self.hash_state) if self.hash_state else None


def parse_s3_url(url: str) -> tuple[str, str]:
    """s3://bucket/optional/prefix -> (bucket, 'optional/prefix/')."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"storage URL {url!r} names no bucket")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class S3BlobStore:
    append_bytes = PART_SIZE  # each append one whole part: no bytes wait in a pending tail

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
    def _claimed(self, upload_id: str) -> Iterator[str]:
        root = self._upload_dir(upload_id)
        with self._busy_guard:
            if upload_id in self._busy:
                raise UploadBusy(upload_id)
            self._busy.add(upload_id)
        try:
            yield root
        except ClientError as exc:
            if _missing(exc):  # its multipart upload or pending object went: the upload was deleted
                raise UploadNotFound(upload_id) from None
            raise
        finally:
            with self._busy_guard:
                self._busy.discard(upload_id)

    def create_upload(self, upload_id: str) -> UploadState:
        self._upload_dir(upload_id)  # nothing to write: the first append creates what it needs
        hasher = resumable()
        exported = base64.b64encode(hasher.export()).decode() if hasher else None
        return UploadState(0, asdict(_State(hash_state=exported)))

    def _drop_stale(self, state: _State) -> None:
        """Delete the pending objects the given (so kept) state says were superseded."""
        if state.stale:
            objects = [{"Key": key} for key in state.stale]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            state.stale = []

    @staticmethod
    def _if_pending(state: _State) -> dict[str, str]:
        """Copy the pending object only if it still holds the bytes the state hashed."""
        return {"CopySourceIfMatch": state.pending_etag} if state.pending_etag else {}

    def _pending_bytes(self, state: _State) -> bytes:
        if not state.pending:
            return b""
        kw = {"IfMatch": state.pending_etag} if state.pending_etag else {}
        return bytes(self.client.get_object(Bucket=self.bucket, Key=state.pending, **kw)["Body"].read())

    def _upload_part(self, root: str, state: _State, data: bytes | None, copy_from: str | None = None) -> None:
        """Add the next part: `data`, or (server-side) the whole pending object `copy_from`."""
        if state.upload is None:
            state.upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=root + "data")["UploadId"]
        number = len(state.parts) + 1  # from the given state: a retried append overwrites its own part
        common = {"Bucket": self.bucket, "Key": root + "data", "UploadId": state.upload, "PartNumber": number}
        if copy_from is not None:
            source = {"Bucket": self.bucket, "Key": copy_from}
            result = self.client.upload_part_copy(CopySource=source, **self._if_pending(state), **common)
            etag, size = result["CopyPartResult"]["ETag"], state.pending_size
        else:
            assert data is not None
            etag, size = self.client.upload_part(Body=data, **common)["ETag"], len(data)
        state.parts.append({"PartNumber": number, "ETag": etag, "Size": size})

    def append_upload(self, upload_id: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        with self._claimed(upload_id) as root:
            st = _State.of(state)
            self._drop_stale(st)
            hasher = resume(st.hasher_state())
            size = state.size
            # Nothing below changes what the given state refers to (parts it lists, its pending object):
            # a part this append sends is overwritten by the next attempt if its state is not kept.
            pieces: list[bytes] = []
            held = 0
            for chunk in chunks:
                if not chunk:
                    continue
                if st.pending and size == state.size:  # the tail goes out with the first new bytes
                    pieces.append(self._pending_bytes(st))
                    held = st.pending_size
                if hasher is not None:
                    hasher.update(chunk)
                pieces.append(chunk)
                held += len(chunk)
                size += len(chunk)
                if held >= PART_SIZE:
                    self._upload_part(root, st, pieces[0] if len(pieces) == 1 else b"".join(pieces))
                    pieces, held = [], 0
            if size == state.size:
                return state  # nothing arrived
            if st.pending:
                st.stale.append(st.pending)
                st.pending, st.pending_size, st.pending_etag = None, 0, None
            if held >= MIN_PART:
                self._upload_part(root, st, b"".join(pieces))
            elif held:
                key = f"{root}pending-{uuid.uuid4().hex}"
                etag = self.client.put_object(Bucket=self.bucket, Key=key, Body=b"".join(pieces))["ETag"]
                st.pending, st.pending_size, st.pending_etag = key, held, etag
            st.hash_state = base64.b64encode(hasher.export()).decode() if hasher is not None else None
            return UploadState(size, asdict(st))

    def commit_upload(self, upload_id: str, state: UploadState, digest: str) -> int:
        try:
            return self._commit(upload_id, state, digest)
        except UploadNotFound:  # deleted meanwhile: remove what an append since may have left
            self._discard(upload_id, None)
            raise

    def _commit(self, upload_id: str, state: UploadState, digest: str) -> int:
        algorithm = digest.split(":", 1)[0]
        with self._claimed(upload_id) as root:
            st = _State.of(state)
            data_key = root + "data"
            saved = st.hasher_state() if algorithm == DEFAULT_ALGORITHM else None
            hasher = resume(saved)
            if hasher is not None:  # verified from the given state, before anything is assembled
                self._verify(upload_id, st, digest, f"{algorithm}:{hasher.hexdigest()}")
            elif st.upload is None:
                tail = self._pending_bytes(st)
                self._verify(upload_id, st, digest, f"{algorithm}:{hashlib.new(algorithm, tail).hexdigest()}")
            target = self._key(digest)
            stored = self._head(target) is not None  # a stored blob is never rewritten
            if st.upload is not None and (hasher is None or not stored):
                if st.pending:
                    self._upload_part(root, st, None, copy_from=st.pending)  # the tail, copied server-side
                parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in st.parts]
                # S3 checks every ETag: bytes other than those hashed cannot be assembled.
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=data_key, UploadId=st.upload, MultipartUpload={"Parts": parts}
                )
                st.upload = None
                if hasher is None:  # no saved state for this algorithm: read the assembled bytes back
                    self._verify(upload_id, st, digest, self._hash_object(data_key, algorithm))
                    stored = self._head(target) is not None
            if not stored:
                if st.parts:
                    self.client.copy(
                        {"Bucket": self.bucket, "Key": data_key}, self.bucket, target, Config=self._transfer
                    )
                elif st.pending:  # a blob smaller than a part: its one pending object, copied
                    self.client.copy_object(
                        Bucket=self.bucket,
                        Key=target,
                        CopySource={"Bucket": self.bucket, "Key": st.pending},
                        **self._if_pending(st),
                    )
                else:
                    self.client.put_object(Bucket=self.bucket, Key=target, Body=b"")
            self._discard(upload_id, st)
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
        root = self._upload_dir(upload_id)
        if state is not None and state.upload is not None:
            self._abort(root + "data", state.upload)
        # Multipart uploads an append whose state was not kept may have started, and every object of
        # the upload: listings of this one upload's prefix, never of the bucket.
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
        self._discard(upload_id, None)
