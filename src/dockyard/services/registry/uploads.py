"""Blob upload sessions: monolithic, POST+PUT, chunked PATCH, status, cancel.

The session row (which repository, when) lives in the database and the bytes in the store's
staging area, so any replica can continue an upload another one began.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import BlobUploadUnknown, DigestInvalid, QuotaExceeded, RangeInvalid
from dockyard.services.registry.common import (
    check_digest,
    check_name,
    check_quota,
    ensure_repository,
    link_blob,
    lock_blob,
)
from dockyard.storage.base import BlobStore, DigestMismatch, UploadNotFound, UploadOffsetMismatch

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class UploadService:
    def __init__(self, db: Database, store: BlobStore, grace: float = 3600.0) -> None:
        self.db = db
        self.store = store
        self.grace = grace  # how long an uploaded blob may wait for a manifest before it is garbage

    def start(self, name: str) -> str:
        check_name(name)
        upload_id = str(uuid.uuid4())
        with self.db.write() as conn:
            repo_id = ensure_repository(self.db, conn, name)
            ts = now()
            conn.execute(
                sa.insert(s.upload_sessions).values(id=upload_id, repository_id=repo_id, created_at=ts, updated_at=ts)
            )
        self.store.create_upload(upload_id)
        return upload_id

    def _check_session(self, name: str, upload_id: str) -> int:
        check_name(name)
        if not _UUID_RE.fullmatch(upload_id):
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id})
        q = (
            sa.select(s.upload_sessions.c.repository_id)
            .select_from(s.upload_sessions.join(s.repositories))
            .where(s.upload_sessions.c.id == upload_id, s.repositories.c.name == name)
        )
        with self.db.read() as conn:
            repo_id = conn.execute(q).scalar()
        if repo_id is None:
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id})
        return repo_id

    def status(self, name: str, upload_id: str) -> int:
        self._check_session(name, upload_id)
        try:
            return self.store.upload_size(upload_id)
        except UploadNotFound:
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id}) from None

    def append(self, name: str, upload_id: str, chunks: Iterable[bytes], offset: int | None = None) -> int:
        """Append a chunk; `offset` (from Content-Range) must equal the bytes received so far."""
        self._check_session(name, upload_id)
        return self._append(upload_id, chunks, offset)

    def _append(self, upload_id: str, chunks: Iterable[bytes], offset: int | None) -> int:
        try:
            current = self.store.upload_size(upload_id)
            if offset is not None and offset != current:
                raise RangeInvalid(f"chunk starts at {offset}, upload has {current} bytes", current)
            return self.store.append_upload(upload_id, current, chunks)
        except UploadNotFound:
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id}) from None
        except UploadOffsetMismatch as exc:  # a concurrent chunk got there first
            raise RangeInvalid(str(exc), exc.expected) from None

    def finish(
        self, name: str, upload_id: str, digest: str, chunks: Iterable[bytes] = (), offset: int | None = None
    ) -> int:
        """Append the last chunk (if any), verify the digest and make the blob visible; returns its size."""
        check_digest(digest)
        repo_id = self._check_session(name, upload_id)
        self._append(upload_id, chunks, offset)
        return self._commit(repo_id, upload_id, digest)

    def _commit(self, repo_id: int, upload_id: str, digest: str) -> int:
        try:
            staged = self.store.upload_size(upload_id)
        except UploadNotFound:
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id}) from None
        try:
            with self.db.read() as conn:
                check_quota(self.db, conn, repo_id, digest, staged)
        except QuotaExceeded:
            self._drop_session(upload_id)  # refused before the bytes are committed: nothing remains
            raise
        try:
            size = self.store.commit_upload(upload_id, digest)
        except DigestMismatch as exc:
            self._drop_session(upload_id)
            raise DigestInvalid(
                "provided digest did not match uploaded content", {"expected": exc.expected, "actual": exc.actual}
            ) from None
        except UploadNotFound:
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id}) from None
        try:
            with self.db.write() as conn:
                link_blob(self.db, self.store, conn, repo_id, digest, size, self.grace)
                conn.execute(sa.delete(s.upload_sessions).where(s.upload_sessions.c.id == upload_id))
        except QuotaExceeded:
            # Lost a race for the last of the quota after the bytes were moved into place: remove
            # them again unless another push owns them by now.
            with self.db.write() as conn:
                if lock_blob(self.db, conn, digest) is None:
                    self.store.delete(digest)
                conn.execute(sa.delete(s.upload_sessions).where(s.upload_sessions.c.id == upload_id))
            raise
        return size

    def monolithic(self, name: str, digest: str, chunks: Iterable[bytes]) -> int:
        """POST ?digest= with the whole blob as the body."""
        check_digest(digest)
        upload_id = self.start(name)
        repo_id = self._check_session(name, upload_id)
        try:
            self._append(upload_id, chunks, 0)
            return self._commit(repo_id, upload_id, digest)
        except BaseException:
            self.cancel(name, upload_id, missing_ok=True)
            raise

    def cancel(self, name: str, upload_id: str, missing_ok: bool = False) -> None:
        try:
            self._check_session(name, upload_id)
        except BlobUploadUnknown:
            if missing_ok:
                return
            raise
        self._drop_session(upload_id)

    def _drop_session(self, upload_id: str) -> None:
        self.store.delete_upload(upload_id)
        with self.db.write() as conn:
            conn.execute(sa.delete(s.upload_sessions).where(s.upload_sessions.c.id == upload_id))
