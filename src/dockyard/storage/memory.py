"""In-memory BlobStore: the same contract as the other drivers, for unit and service tests."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Iterator

from dockyard.storage.base import DigestMismatch, UploadBusy, UploadNotFound, UploadState, put_by_upload


class MemoryBlobStore:
    append_bytes = 4 * 1024 * 1024

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._written: dict[str, float] = {}
        self._uploads: dict[str, bytearray] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def stat(self, digest: str) -> int | None:
        data = self._blobs.get(digest)
        return None if data is None else len(data)

    def open_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        data = self._blobs.get(digest)
        if data is None:
            raise FileNotFoundError(digest)
        return iter([data[start:end]])

    def local_path(self, digest: str) -> str | None:
        return None

    def redirect_url(self, digest: str) -> str | None:
        return None

    def delete(self, digest: str) -> bool:
        with self._lock:
            return self._blobs.pop(digest, None) is not None

    def list_digests(self) -> Iterator[str]:
        return iter(sorted(self._blobs))

    def modified_at(self, digest: str) -> float | None:
        return self._written.get(digest) if digest in self._blobs else None

    def put(self, digest: str, chunks: Iterable[bytes]) -> int:
        return put_by_upload(self, digest, chunks)

    def create_upload(self, upload_id: str) -> UploadState:
        with self._lock:
            self._uploads[upload_id] = bytearray()
        return UploadState()

    def _claim(self, upload_id: str) -> bytearray:
        """Mark the upload busy (the filesystem driver's lock); call with self._lock held."""
        buf = self._uploads.get(upload_id)
        if buf is None:
            raise UploadNotFound(upload_id)
        if upload_id in self._busy:
            raise UploadBusy(upload_id)
        self._busy.add(upload_id)
        return buf

    def append_upload(self, upload_id: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        with self._lock:
            buf = self._claim(upload_id)
        try:
            added = bytearray()  # all or nothing, as on the filesystem
            for chunk in chunks:
                added += chunk
            with self._lock:
                del buf[state.size :]  # what the state does not record was never staged
                buf.extend(added)
                return UploadState(len(buf))
        finally:
            with self._lock:
                self._busy.discard(upload_id)

    def commit_upload(self, upload_id: str, state: UploadState, digest: str) -> int:
        with self._lock:
            self._claim(upload_id)
            buf = self._uploads.pop(upload_id)[: state.size]
            self._busy.discard(upload_id)
        algorithm = digest.split(":", 1)[0]
        actual = f"{algorithm}:{hashlib.new(algorithm, buf).hexdigest()}"
        if actual != digest:
            raise DigestMismatch(digest, actual)
        with self._lock:
            self._blobs.setdefault(digest, bytes(buf))  # a stored blob is never rewritten
            self._written[digest] = time.time()
        return len(buf)

    def delete_upload(self, upload_id: str) -> None:
        with self._lock:
            self._uploads.pop(upload_id, None)
