"""The one storage contract every driver implements, and the errors it raises.

A blob becomes visible only through `commit_upload`/`put`, after its digest was verified, by an
atomic move: a reader never sees a partial blob. Upload staging lives in the store too, so any
replica can append the next chunk of an upload another replica began.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable


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


class UploadOffsetMismatch(StorageError):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"upload offset {actual} does not match current size {expected}")
        self.expected = expected
        self.actual = actual


@runtime_checkable
class BlobStore(Protocol):
    """Blob bytes by digest, plus staging areas for uploads in progress."""

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
    def create_upload(self, upload_id: str) -> None: ...

    def upload_size(self, upload_id: str) -> int:
        """Bytes received so far; raises UploadNotFound."""

    def append_upload(self, upload_id: str, offset: int, chunks: Iterable[bytes]) -> int:
        """Append at `offset` (must equal the current size); returns the new size.

        Appends and commits of one upload exclude each other across threads and processes: while
        one runs, another raises UploadBusy at once. Staged bytes are never rewritten, only added to;
        an append that fails leaves the upload as it was before it.
        """

    def commit_upload(self, upload_id: str, digest: str) -> int:
        """Verify the staged bytes against `digest` and move them into place; returns the size.

        The digest checked is that of exactly the bytes that become visible. On a mismatch the
        staged data is discarded and DigestMismatch raised; nothing is stored. A blob that is
        already stored is never rewritten: the staged copy is discarded instead.
        """

    def delete_upload(self, upload_id: str) -> None: ...


def put_by_upload(store: BlobStore, digest: str, chunks: Iterable[bytes]) -> int:
    """`put` as a driver with upload staging does it: a private upload, appended and committed (so the
    digest is checked exactly as a client's upload is), then discarded."""
    upload_id = "put-" + uuid.uuid4().hex
    store.create_upload(upload_id)
    try:
        store.append_upload(upload_id, 0, chunks)
        return store.commit_upload(upload_id, digest)
    finally:
        store.delete_upload(upload_id)
