"""Reading, deleting and mounting blobs within a repository."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.errors import BlobUnknown, BlobUploadInvalid, NameInvalid
from dockyard.services.events import BlobDeleted, BlobMounted, Listeners, RegistryListener
from dockyard.services.registry.links import link_blob, unlink_blob
from dockyard.services.registry.quota import check_quota
from dockyard.services.registry.repositories import ensure_repository
from dockyard.services.registry.validation import check_digest, check_name
from dockyard.storage.base import BlobStore


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
        self.events = events or Listeners()  # told of deletes and mounts, in their transactions

    def _linked_size(self, name: str, digest: str) -> int | None:
        q = (
            sa.select(s.blobs.c.size)
            .select_from(s.repository_blobs.join(s.repositories).join(s.blobs))
            # A blob the collector has begun to delete is unknown: the client uploads it again.
            .where(s.repositories.c.name == name, s.repository_blobs.c.digest == digest, s.blobs.c.status == "ok")
        )
        with self.db.read() as conn:
            return conn.execute(q).scalar()

    def info(self, name: str, digest: str) -> BlobInfo:
        """The blob as repository `name` sees it; BlobUnknown unless linked there and stored."""
        check_name(name)
        check_digest(digest)
        size = self._linked_size(name, digest)
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
                link_blob(self.db, self.store, conn, repo_id, digest, size, self.grace)
                self.events.changed(conn, BlobMounted(repository=name, digest=digest, size=size, source=source))
        except BlobUploadInvalid:
            return None  # collected meanwhile: the client uploads instead
        return size
