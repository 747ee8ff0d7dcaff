"""Blob links: a stored blob made visible in a repository, and taken away again.

Every link change runs under the blob's row lock (`lock_blob`), the lock the collector takes too, and
keeps usage right in the same transaction (`quota.account_link`). See docs/garbage-collection.md.
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


def link_blob(
    db: Database,
    store: BlobStore,
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
    elif row.status != "ok":
        conn.execute(sa.update(s.blobs).where(s.blobs.c.digest == digest).values(status="ok"))
    if store.stat(digest) is None:
        raise BlobUploadInvalid(
            "the blob's bytes were garbage-collected while this push was in progress: upload the blob again",
            {"digest": digest},
        )
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
