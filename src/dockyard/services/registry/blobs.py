"""Reading, deleting and mounting blobs within a repository."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.errors import BlobUnknown, BlobUploadInvalid, NameInvalid
from dockyard.services.events import BlobDeleted, BlobMounted, RegistryListener
from dockyard.services.registry.gc_queue import with_gc_bookkeeping
from dockyard.services.registry.links import confirm_stored, link_blob, remove_bytes, unlink_blob
from dockyard.services.registry.quota import check_quota
from dockyard.services.registry.read_cache import StampedCache
from dockyard.services.registry.repositories import ensure_repository
from dockyard.services.registry.validation import check_digest, check_name
from dockyard.storage.base import BlobStore


@dataclass(frozen=True, slots=True)
class StoredBlob:
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    local_path: str | None
    redirect_url: str | None


class BlobService:
    def __init__(
        self, db: Database, store: BlobStore, grace: float = 3600.0, events: RegistryListener | None = None
    ) -> None:
        self.db = db
        self.store = store
        self.grace = grace
        # Told of deletes and mounts in their transactions: the collector's queue, then `events`.
        self.events = with_gc_bookkeeping(db, grace, events)
        # (repository, digest) -> size of a linked blob, while the database has not changed.
        self._linked: StampedCache[tuple[str, str], int] = StampedCache(db.changes)

    def _linked_size(self, name: str, digest: str) -> int | None:
        q = (
            sa.select(s.blobs.c.size)
            .select_from(s.repository_blobs.join(s.repositories).join(s.blobs))
            # A blob the collector has begun to delete is unknown: the client uploads it again.
            .where(s.repositories.c.name == name, s.repository_blobs.c.digest == digest, s.blobs.c.status == "ok")
        )
        with self.db.read() as conn:
            return conn.execute(q).scalar()

    def usage(self) -> dict[str, int]:
        """What the storage holds: blobs stored once each, however many repositories link them, and
        their bytes; and the repositories and manifests. One statement (a sum over every blob)."""
        b, r, m = s.blobs.c, s.repositories.c, s.manifests.c
        stmt = sa.select(
            sa.select(sa.func.count()).select_from(s.blobs).where(b.status == "ok").scalar_subquery(),
            sa.select(sa.func.coalesce(sa.func.sum(b.size), 0)).where(b.status == "ok").scalar_subquery(),
            sa.select(sa.func.count(r.id)).scalar_subquery(),
            sa.select(sa.func.count(m.id)).scalar_subquery(),
        )
        with self.db.read() as conn:
            blobs, size, repositories, manifests = conn.execute(stmt).one()
        return {"blobs": int(blobs), "bytes": int(size), "repositories": int(repositories), "manifests": int(manifests)}

    def info(self, name: str, digest: str) -> BlobInfo:
        """The blob as repository `name` sees it; BlobUnknown unless linked there and stored."""
        size = self._linked.get((name, digest))  # only valid names and digests are stored
        if size is None:
            check_name(name)
            check_digest(digest)
            stamp = self._linked.stamp()
            size = self._linked_size(name, digest)
            if size is not None:
                self._linked.put(stamp, (name, digest), size)
        # The bytes are checked too, so a client told "exists" can rely on it (and one whose blob
        # vanished from storage is asked to upload it again instead of pushing a dangling manifest).
        if size is None or self.store.stat(digest) is None:
            raise BlobUnknown("blob unknown to registry", {"digest": digest})
        return BlobInfo(digest, size, self.store.local_path(digest), self.store.redirect_url(digest))

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            return self.store.open_range(digest, start, end)
        except FileNotFoundError:
            raise BlobUnknown("blob bytes missing from storage", {"digest": digest}) from None

    def delete(self, name: str, digest: str) -> None:
        """Unlink the blob from the repository; the bytes go when the collector finds them unreferenced."""
        check_name(name)
        check_digest(digest)
        with self.db.write() as conn:
            repo_id = conn.execute(sa.select(s.repositories.c.id).where(s.repositories.c.name == name)).scalar()
            deleted = repo_id is not None and unlink_blob(self.db, conn, repo_id, digest)
            if deleted:
                self.events.changed(conn, BlobDeleted(repository=name, digest=digest))
        if not deleted:
            raise BlobUnknown("blob unknown to repository", {"digest": digest})

    def mount(self, name: str, digest: str, source: str) -> int | None:
        """Link a blob `source` can see into `name`; returns its size, or None when it can't be mounted.

        The caller has already checked that the identity may pull from `source`.
        """
        check_name(name)
        check_digest(digest)
        try:
            check_name(source)
        except NameInvalid:
            return None  # a bad `from` is just a mount that cannot happen: the client uploads instead
        size = self._linked_size(source, digest)
        if size is None or self.store.stat(digest) is None:
            return None
        try:
            with self.db.write() as conn:
                repo_id = ensure_repository(self.db, conn, name)
                check_quota(self.db, conn, repo_id, digest, size)
                linked = link_blob(self.db, conn, repo_id, digest, size, self.grace)
                self.events.changed(conn, BlobMounted(repository=name, digest=digest, size=size, source=source))
            confirm_stored(self.db, self.store, repo_id, digest, linked)
        except BlobUploadInvalid:
            return None  # collected meanwhile: the client uploads instead
        return size

    # -- for the scrub and the reconcile: every stored blob, and bytes no row records -----------------

    def stored(self, batch: int = 500) -> Iterator[list[StoredBlob]]:
        """Every blob the registry holds (status ok), in digest order, one batch per short read
        transaction: a walk of hours holds no snapshot, and blobs added meanwhile ahead of the
        cursor are seen."""
        b = s.blobs.c
        after = ""
        while True:
            with self.db.read() as conn:
                rows = conn.execute(
                    sa.select(b.digest, b.size)
                    .where(b.digest > after, b.status == "ok")
                    .order_by(b.digest)
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield [StoredBlob(str(digest), int(size)) for digest, size in rows]
            after = rows[-1].digest

    def recorded(self, digest: str) -> bool:
        """Whether the database has a row for the blob (in any status)."""
        with self.db.read() as conn:
            return conn.execute(sa.select(s.blobs.c.digest).where(s.blobs.c.digest == digest)).first() is not None

    def delete_unrecorded(self, digest: str, size: int = 0) -> bool:
        """Delete stored bytes no blob row records (`links.remove_bytes`: a `removing` row first, so an
        upload that records them meanwhile wins or is told to upload again; the storage call outside
        any transaction). Returns whether they were deleted."""
        return remove_bytes(self.db, self.store, digest, size, unrecorded=True)
