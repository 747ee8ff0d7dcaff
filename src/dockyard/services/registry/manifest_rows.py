"""Deleting a manifest's rows, for a delete by digest and for the collector alike."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.registry.gc_queue import enqueue_gc


def delete_manifest_rows(
    db: Database, conn: Connection, repo_id: int, manifest_id: int, digest: str
) -> tuple[str, ...]:
    """Delete a manifest with its tags and references, and queue what may have become garbage with it:
    its blob links, the manifests it indexes, and its referrers (their subject is gone). Returns the
    tags that went with it, for the ManifestDeleted event the caller sends (whose listeners do the
    rest: the audit entry, the scan results of the last copy)."""
    tags = tuple(sorted(conn.execute(sa.select(s.tags.c.name).where(s.tags.c.manifest_id == manifest_id)).scalars()))
    blobs = list(
        conn.execute(
            sa.select(s.manifest_blobs.c.digest).where(s.manifest_blobs.c.manifest_id == manifest_id)
        ).scalars()
    )
    children = list(
        conn.execute(
            sa.select(s.manifest_children.c.child_digest).where(s.manifest_children.c.manifest_id == manifest_id)
        ).scalars()
    )
    referrers = list(
        conn.execute(
            sa.select(s.manifests.c.digest).where(
                s.manifests.c.repository_id == repo_id, s.manifests.c.subject_digest == digest
            )
        ).scalars()
    )
    conn.execute(sa.delete(s.tags).where(s.tags.c.manifest_id == manifest_id))
    conn.execute(sa.delete(s.manifest_blobs).where(s.manifest_blobs.c.manifest_id == manifest_id))
    conn.execute(sa.delete(s.manifest_children).where(s.manifest_children.c.manifest_id == manifest_id))
    conn.execute(sa.delete(s.manifests).where(s.manifests.c.id == manifest_id))
    # Queue entries in one global order (kind, digest): two deletes sharing blobs then wait for each
    # other instead of deadlocking on PostgreSQL (seen in the GC stress test).
    for blob in sorted(blobs):
        enqueue_gc(db, conn, "link", repo_id, blob, 0)
    for child in sorted({*children, *referrers}):
        enqueue_gc(db, conn, "manifest", repo_id, child, 0)
    return tags
