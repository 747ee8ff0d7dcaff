"""Small helpers shared by the registry services: input validation and repository lookup."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci.digest import Digest
from dockyard.oci.errors import InvalidDigest, InvalidName, InvalidTag
from dockyard.oci.names import project_of, validate_name, validate_tag
from dockyard.services.errors import BlobUploadInvalid, DigestInvalid, NameInvalid, QuotaExceeded, TagInvalid
from dockyard.storage.base import BlobStore


def check_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise NameInvalid(exc.message, exc.detail) from None


def check_tag(tag: str) -> str:
    try:
        return validate_tag(tag)
    except InvalidTag as exc:
        raise TagInvalid(exc.message, exc.detail) from None


def check_digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise DigestInvalid(exc.message, {"digest": value}) from None


def repository_id(conn: Connection, name: str) -> int | None:
    return conn.execute(sa.select(s.repositories.c.id).where(s.repositories.c.name == name)).scalar()


def ensure_repository(db: Database, conn: Connection, name: str) -> int:
    repo_id = repository_id(conn, name)
    if repo_id is None:
        project = project_of(name)
        project_id = conn.execute(sa.select(s.projects.c.id).where(s.projects.c.name == project)).scalar()
        conn.execute(db.insert_ignore(s.repositories, name=name, created_at=now(), project_id=project_id))
        repo_id = repository_id(conn, name)
    assert repo_id is not None
    return repo_id


def byte_order(db: Database, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """Compare/sort strings by bytes on both engines (PostgreSQL's default collation is locale-aware)."""
    return column if db.is_sqlite else column.collate("C")


def lock_blob(db: Database, conn: Connection, digest: str, shared: bool = False) -> Any:
    """Read a blob row and lock it for the rest of the transaction (PostgreSQL row lock; SQLite
    write transactions are serialized anyway). The collector takes the same lock before it marks or
    removes a blob, so a push and the collector never decide about one blob at the same time."""
    stmt = sa.select(s.blobs.c.size, s.blobs.c.status).where(s.blobs.c.digest == digest)
    if not db.is_sqlite:
        stmt = stmt.with_for_update(read=shared)
    return conn.execute(stmt).first()


def enqueue_gc(db: Database, conn: Connection, kind: str, repo_id: int, digest: str, delay: float) -> None:
    """Ask the collector to look at something that may have become garbage, once `delay` has passed."""
    conn.execute(
        db.upsert(s.gc_queue, ["kind", "repository_id", "digest"], kind=kind, repository_id=repo_id, digest=digest,
                  due_at=now() + delay)
    )  # fmt: skip


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
    """Remove a repository's link to a blob; the blob itself becomes a candidate for the collector."""
    row = lock_blob(db, conn, digest)
    gone = conn.execute(
        sa.delete(s.repository_blobs).where(
            s.repository_blobs.c.repository_id == repo_id, s.repository_blobs.c.digest == digest
        )
    ).rowcount
    if not gone:
        return False
    account_link(db, conn, repo_id, digest, row.size if row is not None else 0, -1)
    enqueue_gc(db, conn, "blob", 0, digest, 0)
    return True


def account_link(db: Database, conn: Connection, repo_id: int, digest: str, size: int, delta: int) -> None:
    """Keep repository and project usage right as links come and go; a blob counts once per project.

    Raises QuotaExceeded (and so rolls the link back) when a new blob would take a project over quota.
    """
    r, p, pb = s.repositories.c, s.projects.c, s.project_blobs.c
    conn.execute(sa.update(s.repositories).where(r.id == repo_id).values(used_bytes=r.used_bytes + delta * size))
    project_id = conn.execute(sa.select(r.project_id).where(r.id == repo_id)).scalar()
    if project_id is None:
        return
    if delta > 0:
        new = conn.execute(
            db.insert_ignore(s.project_blobs, project_id=project_id, digest=digest, size=size, links=1).returning(
                pb.digest
            )
        ).scalar()
        if new is None:
            conn.execute(
                sa.update(s.project_blobs)
                .where(pb.project_id == project_id, pb.digest == digest)
                .values(links=pb.links + 1)
            )
            return
        stmt = sa.select(p.name, p.quota_bytes, p.used_bytes).where(p.id == project_id)
        if not db.is_sqlite:
            # FOR NO KEY UPDATE, not FOR UPDATE: this transaction and concurrent pushes into the
            # project already hold KEY SHARE on its row (the foreign keys of the rows they inserted),
            # and FOR UPDATE conflicts with that, so two pushes deadlocked. It still serialises the
            # quota check against other pushes, which take this same lock.
            stmt = stmt.with_for_update(key_share=True)
        project = conn.execute(stmt).one()
        if project.quota_bytes is not None and project.used_bytes + size > project.quota_bytes:
            raise QuotaExceeded(project.name, project.quota_bytes, project.used_bytes, size)
        conn.execute(sa.update(s.projects).where(p.id == project_id).values(used_bytes=p.used_bytes + size))
        return
    links = conn.execute(
        sa.update(s.project_blobs)
        .where(pb.project_id == project_id, pb.digest == digest)
        .values(links=pb.links - 1)
        .returning(pb.links, pb.size)
    ).first()
    if links is not None and links.links <= 0:
        conn.execute(sa.delete(s.project_blobs).where(pb.project_id == project_id, pb.digest == digest))
        conn.execute(sa.update(s.projects).where(p.id == project_id).values(used_bytes=p.used_bytes - links.size))


def check_quota(db: Database, conn: Connection, repo_id: int, digest: str, size: int) -> None:
    """Refuse, before any bytes are committed, a blob that would take the project over its quota."""
    r, p, pb = s.repositories.c, s.projects.c, s.project_blobs.c
    row = conn.execute(
        sa.select(p.name, p.quota_bytes, p.used_bytes, p.id)
        .select_from(s.repositories.join(s.projects, p.id == r.project_id))
        .where(r.id == repo_id)
    ).first()
    if row is None or row.quota_bytes is None:
        return
    held = conn.execute(sa.select(pb.digest).where(pb.project_id == row.id, pb.digest == digest)).first()
    if held is None and row.used_bytes + size > row.quota_bytes:
        raise QuotaExceeded(row.name, row.quota_bytes, row.used_bytes, size)


def delete_manifest_rows(db: Database, conn: Connection, repo_id: int, manifest_id: int, digest: str) -> None:
    """Delete a manifest with its tags and references, and queue what may have become garbage with it:
    its blob links, the manifests it indexes, and its referrers (their subject is gone)."""
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
    if conn.execute(sa.select(s.manifests.c.id).where(s.manifests.c.digest == digest).limit(1)).first() is None:
        # The last copy of this image: its scan results describe nothing stored any more.
        for table in (s.image_scans, s.image_findings, s.image_packages, s.finding_aliases):
            conn.execute(sa.delete(table).where(table.c.digest == digest))
    # Queue entries in one global order (kind, digest): two deletes sharing blobs then wait for each
    # other instead of deadlocking on PostgreSQL (seen in the GC stress test).
    for blob in sorted(blobs):
        enqueue_gc(db, conn, "link", repo_id, blob, 0)
    for child in sorted({*children, *referrers}):
        enqueue_gc(db, conn, "manifest", repo_id, child, 0)
