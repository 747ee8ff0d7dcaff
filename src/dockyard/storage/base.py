"""The one storage contract every driver implements, and the errors it raises.

A blob becomes visible only through `commit_upload`/`put`, after its digest was verified, by an
atomic move: a reader never sees a partial blob. An upload's bytes are staged in the store; where it
stands (how many bytes, the driver's own metadata: S3's multipart id and parts, the resumable hash
state) is an `UploadState` the driver returns from each call and the caller keeps (UploadService: in
the upload's database row) and hands back with the next, so any replica can append the next chunk of
an upload another replica began, and no driver reads its own bookkeeping back from storage.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class StorageError(Exception):
    pass


class DigestMismatch(StorageError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch: expected {expected}, content is {actual}")
        self.expected = expected
        self.actual = actual


class UploadNotFound(StorageError):
    pass


class UploadBusy(StorageError):
    """Another append or commit of this upload is in progress (in any process)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id} is being written by another request")
        self.upload_id = upload_id


@dataclass(frozen=True)
class UploadState:
    """Where an upload stands: `size` bytes staged, and `driver`, the driver's own metadata (JSON
    values only). Text of at most a few KiB (`dumps`): S3 keeps one entry per 8 MiB part."""

    size: int = 0
    driver: Mapping[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({"size": self.size, "driver": dict(self.driver)}, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> UploadState:
        d = json.loads(text)
        return cls(size=int(d["size"]), driver=d.get("driver") or {})


@runtime_checkable
class BlobStore(Protocol):
    """Blob bytes by digest, plus staging areas for uploads in progress."""

    # The appends this driver takes best (S3: a whole part, so no bytes wait in a pending tail);
    # the HTTP layer batches request bodies to it.
    append_bytes: int

    def stat(self, digest: str) -> int | None:
        """Size of the stored blob, or None when absent."""

    def open_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end) of a blob; raises FileNotFoundError when absent."""

    def local_path(self, digest: str) -> str | None:
        """A filesystem path for zero-copy sending, when the driver has one."""

    def redirect_url(self, digest: str) -> str | None:
        """A presigned URL a client may be redirected to, when the driver supports it."""

    def delete(self, digest: str) -> bool:
        """Remove a blob; True when something was removed."""

    def list_digests(self) -> Iterator[str]:
        """Every stored blob digest (for reconcile and scrub, never for serving)."""

    def modified_at(self, digest: str) -> float | None:
        """When the blob was last written (UNIX time), or None when absent."""

    def put(self, digest: str, chunks: Iterable[bytes]) -> int:
        """Store a whole blob from a stream, verifying its digest; returns its size."""

    # --- upload staging -------------------------------------------------------------------
    # Calls on one upload are serialised by the caller (UploadService's claim on the row), and each
    # is given the state the previous one returned. The drivers' own per-upload locks are a second
    # line: while an append or commit runs, another raises UploadBusy at once.
    def create_upload(self, upload_id: str) -> UploadState:
        """Open a staging area; returns the state of the empty upload."""

    def append_upload(self, upload_id: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        """Append after the `state.size` bytes `state` records; returns the new state.

        `state` is the truth: bytes staged beyond it (an append that died, or lost its claim, before
        its state was kept) are discarded or overwritten, never counted. An append that fails leaves
        `state` valid, as before it. UploadNotFound when it finds the staging area gone (S3 may
        notice only at the commit, which then removes what such an append left).
        """

    def commit_upload(self, upload_id: str, state: UploadState, digest: str) -> int:
        """Verify the staged bytes against `digest` and move them into place; returns the size.

        The digest checked is that of exactly the bytes that become visible (`state.size` of them).
        On a mismatch the staged data is discarded and DigestMismatch raised; nothing is stored. A
        blob that is already stored is never rewritten: the staged copy is discarded instead.
        """

    def delete_upload(self, upload_id: str) -> None:
        """Remove everything staged for the upload (S3: its multipart uploads aborted); idempotent."""


def put_by_upload(store: BlobStore, digest: str, chunks: Iterable[bytes]) -> int:
    """`put` as a driver with upload staging does it: a private upload, appended and committed (so the
    digest is checked exactly as a client's upload is), then discarded."""
    upload_id = "put-" + uuid.uuid4().hex
    state = store.create_upload(upload_id)
    try:
        return store.commit_upload(upload_id, store.append_upload(upload_id, state, chunks), digest)
    finally:
        store.delete_upload(upload_id)
