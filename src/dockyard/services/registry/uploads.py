"""Blob upload sessions: monolithic, POST+PUT, chunked PATCH, status, cancel.

The session row (which repository, who, how many bytes, when, and the store's upload state: size,
S3's multipart id and parts, the resumable hash state) lives in the database and the bytes in the
store's staging area, so any replica can continue an upload another one began.

One request at a time writes to a session. Each append or commit first claims the session row (a
conditional UPDATE, so replicas that share no lock manager still exclude each other) and reads the
state from it; a request that finds it claimed gets 416 with the current size, as a client expects
after a lost race. The store is called with no transaction open (on SQLite a write transaction is the
one writer lock), and the new state is kept by the release, a short UPDATE that only the claim's
holder can make: an append whose claim expired and was taken over is not counted (416), and the
store discards what it staged beyond the kept state. The store's own per-upload lock is the second
line (BlobStore.append_upload). Staged bytes are counted in the row as they arrive and, with the
other open sessions of the project, against its quota.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    QuotaExceeded,
    RangeInvalid,
    TooManyRequests,
)
from dockyard.services.events import BlobPushed, Listeners, RegistryListener
from dockyard.services.lifecycle import leases
from dockyard.services.projects import ProjectService
from dockyard.services.registry.links import confirm_stored, link_blob, lock_blob, remove_bytes
from dockyard.services.registry.quota import check_quota
from dockyard.services.registry.repositories import ensure_repository
from dockyard.services.registry.validation import check_digest, check_name
from dockyard.storage.base import BlobStore, DigestMismatch, UploadBusy, UploadNotFound, UploadState

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# How long a claim holds if its request dies without releasing it (a crashed replica). One claim
# covers one chunk (a batch of BlobStore.append_bytes, at most 8 MiB), so a live claim is never this old.
CLAIM_SECONDS = 300.0
# What a client refused for too many open sessions is told to wait: sessions end with a commit, a
# cancel, or the idle expiry.
SESSIONS_RETRY_AFTER = 60


class UploadService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        grace: float = 3600.0,
        max_sessions_per_owner: int = 100,
        events: RegistryListener | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.events = events or Listeners()  # told of each committed upload, in its transaction
        self.grace = grace  # how long an uploaded blob may wait for a manifest before it is garbage
        self.max_sessions_per_owner = max_sessions_per_owner  # 0: no cap

    def expire_abandoned(self, idle_ttl: float, ttl: float, at: float | None = None) -> int:
        """Remove the sessions abandoned at time `at` (default now), with their staged bytes: idle for
        `idle_ttl` (no claim or append since; a claim still held means a chunk is being written,
        which is not idle), or older than `ttl`. Returns how many went."""
        u = s.upload_sessions.c
        ts = now() if at is None else at
        # Every claim and release of an append refreshes updated_at.
        writing = sa.and_(u.claimed_until.is_not(None), u.claimed_until > ts)
        idle = sa.and_(u.updated_at < ts - idle_ttl, sa.not_(writing))
        abandoned = sa.or_(idle, u.created_at < ts - ttl)
        removed = 0
        with self.db.read() as conn:
            stale = list(conn.execute(sa.select(u.id).where(abandoned)).scalars())
        for upload_id in stale:
            leases.heartbeat()  # the collector's duty runs this: keep its lease
            with self.db.write() as conn:
                gone = conn.execute(sa.delete(s.upload_sessions).where(u.id == upload_id, abandoned)).rowcount
            if gone:
                self.store.delete_upload(upload_id)
                removed += 1
        return removed

    def start(self, name: str, owner: str | None = None) -> str:
        """Open a session for `owner` (the caller's identity; None: internal, not capped)."""
        check_name(name)
        upload_id = str(uuid.uuid4())
        state = self.store.create_upload(upload_id)  # before the row: no storage call in the transaction
        try:
            with self.db.write() as conn:
                repo_id = ensure_repository(self.db, conn, name)
                if owner is not None and self.max_sessions_per_owner:
                    self._check_session_cap(conn, owner)
                ts = now()
                conn.execute(
                    sa.insert(s.upload_sessions).values(
                        id=upload_id,
                        repository_id=repo_id,
                        created_at=ts,
                        updated_at=ts,
                        owner=owner,
                        size=0,
                        store_state=state.dumps(),
                    )
                )
        except BaseException:
            self.store.delete_upload(upload_id)
            raise
        return upload_id

    def _check_session_cap(self, conn: Connection, owner: str) -> None:
        if not self.db.is_sqlite:
            # Two starts by one owner must not both count below the cap (SQLite writers are serial).
            key = int.from_bytes(hashlib.sha256(b"upload-owner:" + owner.encode()).digest()[:8], "big", signed=True)
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        u = s.upload_sessions.c
        count = conn.execute(sa.select(sa.func.count()).select_from(s.upload_sessions).where(u.owner == owner)).scalar()
        if int(count or 0) >= self.max_sessions_per_owner:
            raise TooManyRequests(
                f"too many open upload sessions ({count}): finish or cancel some first",
                SESSIONS_RETRY_AFTER,
                {"limit": self.max_sessions_per_owner},
            )

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
        with self.db.read() as conn:
            return self._state(conn, upload_id).size

    def _state(self, conn: Connection, upload_id: str) -> UploadState:
        """The store's state of the upload as last kept (the bytes of an append in flight not counted)."""
        text = conn.execute(
            sa.select(s.upload_sessions.c.store_state).where(s.upload_sessions.c.id == upload_id)
        ).scalar()
        if text is None:  # gone, or opened before the row kept the state (migration 0013): start again
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id})
        return UploadState.loads(text)

    def append(
        self,
        name: str,
        upload_id: str,
        chunks: Iterable[bytes],
        offset: int | None = None,
        digest: str | None = None,
    ) -> int:
        """Append chunks; `offset` (from Content-Range) must equal the bytes received so far.

        `digest`, when the client named it already (monolithic POST, PUT with a body), lets a blob
        the project holds pass the quota as its final PUT would.
        """
        repo_id = self._check_session(name, upload_id)
        return self._append(repo_id, upload_id, chunks, offset, digest)

    def _append(
        self, repo_id: int, upload_id: str, chunks: Iterable[bytes], offset: int | None, digest: str | None
    ) -> int:
        size = None
        for chunk in chunks:
            if chunk:
                size = self._append_one(repo_id, upload_id, chunk, offset, digest)
                offset = None
        if size is not None:
            return size
        with self.db.read() as conn:  # nothing to write: still answer whether the client's offset is right
            current = self._state(conn, upload_id).size
        if offset is not None and offset != current:
            raise RangeInvalid(f"chunk starts at {offset}, upload has {current} bytes", current)
        return current

    def _append_one(self, repo_id: int, upload_id: str, chunk: bytes, offset: int | None, digest: str | None) -> int:
        token = uuid.uuid4().hex
        try:
            with self.db.write() as conn:
                state = self._claim(conn, upload_id, token)
                if offset is not None and offset != state.size:
                    raise RangeInvalid(f"chunk starts at {offset}, upload has {state.size} bytes", state.size)
                self._check_staged_quota(conn, repo_id, digest, len(chunk))
                self._set_size(conn, upload_id, state.size + len(chunk))  # reserved until written
        except QuotaExceeded:
            self._drop_session(upload_id)  # as the final PUT does: nothing of the upload remains
            raise
        try:
            new_state = self.store.append_upload(upload_id, state, [chunk])
        except BaseException as exc:
            # A failed append leaves the given state valid: keep it (and its size) and let go.
            self._release(upload_id, token, state)
            if isinstance(exc, UploadNotFound):
                raise BlobUploadUnknown("upload unknown", {"uuid": upload_id}) from None
            if isinstance(exc, UploadBusy):  # a writer that ignored the claim (an expired one)
                raise RangeInvalid("another request is writing to this upload", state.size) from None
            raise
        if not self._release(upload_id, token, new_state):
            self._lost_claim(upload_id)
        return new_state.size

    def _claim(self, conn: Connection, upload_id: str, token: str) -> UploadState:
        """Claim the session for this request; returns the store's state as last kept."""
        u = s.upload_sessions.c
        ts = now()
        claimed = conn.execute(
            sa.update(s.upload_sessions)
            .where(u.id == upload_id, sa.or_(u.claim.is_(None), u.claimed_until < ts))
            .values(claim=token, claimed_until=ts + CLAIM_SECONDS, updated_at=ts)
        ).rowcount
        state = self._state(conn, upload_id)  # BlobUploadUnknown when the row is gone
        if not claimed:
            raise RangeInvalid("another request is writing to this upload", state.size)
        return state

    def _release(self, upload_id: str, token: str, state: UploadState) -> bool:
        """Keep `state` and let the claim go, if this request still holds it; False when it does not."""
        u = s.upload_sessions.c
        with self.db.write() as conn:
            kept = conn.execute(
                sa.update(s.upload_sessions)
                .where(u.id == upload_id, u.claim == token)
                .values(claim=None, claimed_until=None, size=state.size, store_state=state.dumps(), updated_at=now())
            ).rowcount
        return bool(kept)

    def _lost_claim(self, upload_id: str) -> None:
        """This request's claim expired while it wrote (another took over, or the session went): what
        it staged is not counted. Cancelled or expired meanwhile: remove what it staged since."""
        with self.db.read() as conn:
            try:
                current = self._state(conn, upload_id).size
            except BlobUploadUnknown:
                current = None
        if current is None:
            self.store.delete_upload(upload_id)
            raise BlobUploadUnknown("upload unknown", {"uuid": upload_id})
        raise RangeInvalid("another request is writing to this upload", current)

    def _set_size(self, conn: Connection, upload_id: str, size: int) -> None:
        conn.execute(sa.update(s.upload_sessions).where(s.upload_sessions.c.id == upload_id).values(size=size))

    def _check_staged_quota(self, conn: Connection, repo_id: int, digest: str | None, adding: int) -> None:
        """Refuse a chunk that would take the project's stored plus staged bytes over its quota."""
        r, u, pb = s.repositories.c, s.upload_sessions.c, s.project_blobs.c
        project_id = conn.execute(sa.select(r.project_id).where(r.id == repo_id)).scalar()
        if project_id is None:
            return
        project = ProjectService.lock_quota(conn, project_id)  # the lock pushes take for the quota (account_link)
        if project.quota_bytes is None:
            return
        if digest is not None:
            held = conn.execute(sa.select(pb.digest).where(pb.project_id == project_id, pb.digest == digest)).first()
            if held is not None:
                return  # costs nothing once committed (check_quota)
        staged = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(u.size), 0))
            .select_from(s.upload_sessions.join(s.repositories, r.id == u.repository_id))
            .where(r.project_id == project_id)
        ).scalar()
        used = int(project.used_bytes) + int(staged or 0)
        if used + adding > project.quota_bytes:
            raise QuotaExceeded(project.name, project.quota_bytes, used, adding)

    def finish(
        self, name: str, upload_id: str, digest: str, chunks: Iterable[bytes] = (), offset: int | None = None
    ) -> int:
        """Append the last chunk (if any), verify the digest and make the blob visible; returns its size."""
        check_digest(digest)
        repo_id = self._check_session(name, upload_id)
        self._append(repo_id, upload_id, chunks, offset, digest)
        return self._commit(name, repo_id, upload_id, digest)

    def _commit(self, name: str, repo_id: int, upload_id: str, digest: str) -> int:
        token = uuid.uuid4().hex
        with self.db.write() as conn:
            state = self._claim(conn, upload_id, token)
        try:
            staged = state.size
            try:
                with self.db.read() as conn:
                    check_quota(self.db, conn, repo_id, digest, staged)
            except QuotaExceeded:
                self._drop_session(upload_id)  # refused before the bytes are committed: nothing remains
                raise
            try:
                size = self.store.commit_upload(upload_id, state, digest)
            except DigestMismatch as exc:
                self._drop_session(upload_id)
                raise DigestInvalid(
                    "provided digest did not match uploaded content", {"expected": exc.expected, "actual": exc.actual}
                ) from None
            except UploadNotFound:
                raise BlobUploadUnknown("upload unknown", {"uuid": upload_id}) from None
            except UploadBusy:
                raise RangeInvalid("another request is writing to this upload", staged) from None
        except BaseException:
            self._release(upload_id, token, state)  # nothing committed: the state is as it was
            raise
        try:
            with self.db.write() as conn:
                # The session row first: claims lock it before the project row, so this order cannot deadlock.
                conn.execute(sa.delete(s.upload_sessions).where(s.upload_sessions.c.id == upload_id))
                linked = link_blob(self.db, conn, repo_id, digest, size, self.grace)
                self.events.changed(conn, BlobPushed(repository=name, digest=digest, size=size))
        except BaseException as exc:
            # The staged bytes are gone (committed): the session must not stay behind, counting
            # against the quota. Lost a race for the last of the quota after the bytes were moved
            # into place: remove them again unless another push owns them by now (outside the
            # transaction: no storage call holds the write lock).
            with self.db.write() as conn:
                orphan = isinstance(exc, QuotaExceeded) and lock_blob(self.db, conn, digest) is None
                conn.execute(sa.delete(s.upload_sessions).where(s.upload_sessions.c.id == upload_id))
            if orphan:
                remove_bytes(self.db, self.store, digest, size, unrecorded=True)
            raise
        confirm_stored(self.db, self.store, repo_id, digest, linked)
        return size

    def monolithic(self, name: str, digest: str, chunks: Iterable[bytes], owner: str | None = None) -> int:
        """POST ?digest= with the whole blob as the body."""
        check_digest(digest)
        upload_id = self.start(name, owner)
        repo_id = self._check_session(name, upload_id)
        try:
            self._append(repo_id, upload_id, chunks, 0, digest)
            return self._commit(name, repo_id, upload_id, digest)
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
