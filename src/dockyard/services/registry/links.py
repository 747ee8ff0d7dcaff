"""Blob links: a stored blob made visible in a repository, and taken away again.

Every link change runs under the blob's row lock (`lock_blob`), the lock the collector takes too, and
keeps usage right in the same transaction (`quota.account_link`). See docs/garbage-collection.md.

No storage call happens inside a write transaction (on S3 each is a network round trip, and on SQLite
the transaction is the one writer lock). So bytes are removed in three steps: a transaction sets the
row to `removing` (which no push takes back), the bytes go outside any transaction, and a second
transaction deletes the row (`remove_bytes`). A push links in its transaction and checks the bytes
after it committed (`confirm_stored`): bytes removed before its link are found missing there, and
its link is undone; bytes cannot be removed after it, since the row is linked and `ok` by then.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.errors import BlobUploadInvalid
from dockyard.services.registry.gc_queue import enqueue_gc
from dockyard.services.registry.quota import account_link
from dockyard.storage.base import BlobStore


def lock_blob(db: Database, conn: Connection, digest: str, shared: bool = False) -> Any:
    """Read a blob row and lock it for the rest of the transaction (PostgreSQL row lock; SQLite
    write transactions are serialized anyway). The collector takes the same lock before it marks or
    removes a blob, so a push and the collector never decide about one blob at the same time."""
    stmt = sa.select(s.blobs.c.size, s.blobs.c.status).where(s.blobs.c.digest == digest)
    if not db.is_sqlite:
        stmt = stmt.with_for_update(read=shared)
    return conn.execute(stmt).first()


REMOVING = "removing"
COLLECTED = "the blob's bytes were garbage-collected while this push was in progress: upload the blob again"


def link_blob(
    db: Database,
    conn: Connection,
    repo_id: int,
    digest: str,
    size: int,
    grace: float,
) -> bool:
    """Make a stored blob visible in a repository (upload commit, mount). Returns whether the link is new.

    Under the blob's row lock: a blob the collector has marked for deletion is taken back (its bytes
    are still there, or the check below fails); bytes the collector already removed make the caller
    upload again; quota and usage are updated in this same transaction.
    """
    row = lock_blob(db, conn, digest)
    if row is None:
        conn.execute(db.insert_ignore(s.blobs, digest=digest, size=size, created_at=now(), status="ok"))
        lock_blob(db, conn, digest)
    elif row.status == REMOVING:  # its bytes are being deleted right now
        raise BlobUploadInvalid(COLLECTED, {"digest": digest})
    elif row.status != "ok":  # marked only: the bytes are still there, take it back
        conn.execute(sa.update(s.blobs).where(s.blobs.c.digest == digest).values(status="ok"))
    inserted = conn.execute(
        db.insert_ignore(s.repository_blobs, repository_id=repo_id, digest=digest, created_at=now()).returning(
            s.repository_blobs.c.digest
        )
    ).scalar()
    if inserted is None:
        return False
    account_link(db, conn, repo_id, digest, size, +1)
    # Layers uploaded for a manifest that never comes are garbage after the grace period.
    enqueue_gc(db, conn, "link", repo_id, digest, grace)
    return True


def unlink_blob(db: Database, conn: Connection, repo_id: int, digest: str) -> bool:
    """Remove a repository's link to a blob. The caller sends BlobDeleted, whose garbage-collection
    listener makes the blob itself a candidate for the collector."""
    row = lock_blob(db, conn, digest)
    gone = conn.execute(
        sa.delete(s.repository_blobs).where(
            s.repository_blobs.c.repository_id == repo_id, s.repository_blobs.c.digest == digest
        )
    ).rowcount
    if not gone:
        return False
    account_link(db, conn, repo_id, digest, row.size if row is not None else 0, -1)
    return True


def confirm_stored(db: Database, store: BlobStore, repo_id: int, digest: str, linked: bool) -> None:
    """After a link committed: the bytes must be there. When they were removed before the link (a
    collection or reconcile in the push's gap), undo the link (`linked`: it was new) and ask the client
    to upload again."""
    if store.stat(digest) is not None:
        return
    with db.write() as conn:
        # A manifest pushed in the gap may reference the link by now (its client re-uploaded the
        # bytes, or will be told they are missing by HEAD): undoing the link would leave that
        # manifest with a layer its repository no longer has. The manifest's reference keeps it.
        if linked and lock_blob(db, conn, digest) is not None and not _referenced_in(conn, repo_id, digest):
            unlink_blob(db, conn, repo_id, digest)
        enqueue_gc(db, conn, "blob", 0, digest, 0)  # the row without bytes goes with the next collection
    raise BlobUploadInvalid(COLLECTED, {"digest": digest})


def _referenced_in(conn: Connection, repo_id: int, digest: str) -> bool:
    """Whether a manifest of the repository references the blob."""
    mb, m = s.manifest_blobs.c, s.manifests.c
    q = (
        sa.select(mb.manifest_id)
        .select_from(s.manifest_blobs.join(s.manifests, m.id == mb.manifest_id))
        .where(m.repository_id == repo_id, mb.digest == digest)
        .limit(1)
    )
    return conn.execute(q).first() is not None


def remove_bytes(db: Database, store: BlobStore, digest: str, size: int, unrecorded: bool = False) -> bool:
    """Delete a blob's bytes and row, the storage call outside any transaction. The row must be
    `removing` already, or (`unrecorded`) absent: then a `removing` row is written first, so an upload
    that records the bytes meanwhile waits or is told to upload again. Returns whether bytes went."""
    if unrecorded:
        with db.write() as conn:
            if lock_blob(db, conn, digest) is not None:
                return False  # recorded meanwhile: a late upload won
            conn.execute(db.insert_ignore(s.blobs, digest=digest, size=size, created_at=now(), status=REMOVING))
            enqueue_gc(db, conn, "blob", 0, digest, 0)  # finished by the collector should this process die
    store.delete(digest)
    with db.write() as conn:
        row = lock_blob(db, conn, digest)
        if row is not None and row.status == REMOVING:
            conn.execute(sa.delete(s.blobs).where(s.blobs.c.digest == digest))
    return True
