"""Manifests and indexes: push with reference checks, pull by tag or digest, delete, referrers."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest, is_digest
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import ParsedManifest, parse_manifest
from dockyard.services.audit import AuditLog
from dockyard.services.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    TooLarge,
)
from dockyard.services.registry.common import check_digest, check_name, check_tag, ensure_repository


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class PushResult:
    digest: str
    subject: str | None


class ManifestService:
    def __init__(self, db: Database, max_bytes: int = 4 * 1024 * 1024, audit: AuditLog | None = None) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self.audit = audit
        m, t, r = s.manifests.c, s.tags.c, s.repositories.c
        cols = (m.digest, m.media_type, m.content)
        # Prepared once: GET by tag is the hottest read in the registry.
        self._by_tag = (
            sa.select(*cols)
            .select_from(s.tags.join(s.manifests, t.manifest_id == m.id).join(s.repositories, r.id == t.repository_id))
            .where(r.name == sa.bindparam("name"), t.name == sa.bindparam("ref"))
        )
        self._by_digest = (
            sa.select(*cols)
            .select_from(s.manifests.join(s.repositories, r.id == m.repository_id))
            .where(r.name == sa.bindparam("name"), m.digest == sa.bindparam("ref"))
        )

    # --- pull -------------------------------------------------------------------------------
    def get(self, name: str, reference: str) -> StoredManifest:
        check_name(name)
        if is_digest(reference):
            check_digest(reference)
            query = self._by_digest
        else:
            check_tag(reference)
            query = self._by_tag
        with self.db.engine.connect() as conn:
            row = conn.execute(query, {"name": name, "ref": reference}).first()
        if row is None:
            raise ManifestUnknown("manifest unknown", {"name": name, "reference": reference})
        return StoredManifest(row.digest, row.media_type, bytes(row.content))

    # --- push -------------------------------------------------------------------------------
    def put(self, name: str, reference: str, body: bytes, content_type: str | None) -> PushResult:
        check_name(name)
        if len(body) > self.max_bytes:
            raise TooLarge(f"manifest is {len(body)} bytes, the limit is {self.max_bytes}", {"size": len(body)})
        if is_digest(reference):
            wanted = check_digest(reference)
            digest = str(Digest.of(body, wanted.algorithm))
            if digest != reference:
                raise DigestInvalid(
                    "manifest digest does not match its content", {"expected": reference, "actual": digest}
                )
            tag = None
        else:
            tag = check_tag(reference)
            digest = str(Digest.of(body))
        try:
            parsed = parse_manifest(body, content_type)
        except InvalidManifest as exc:
            raise ManifestInvalid(exc.message, exc.detail) from None

        with self.db.write() as conn:
            repo_id = ensure_repository(self.db, conn, name)
            self._check_references(conn, repo_id, parsed)
            manifest_id = self._store(conn, repo_id, digest, body, parsed)
            if tag is not None:
                conn.execute(
                    self.db.upsert(
                        s.tags,
                        ["repository_id", "name"],
                        repository_id=repo_id,
                        name=tag,
                        manifest_id=manifest_id,
                        updated_at=now(),
                    )
                )
            if self.audit is not None:
                self.audit.record(conn, "push", repository=name, reference=tag, digest=digest)
        return PushResult(digest, parsed.subject.digest if parsed.subject else None)

    def _check_references(self, conn: sa.Connection, repo_id: int, parsed: ParsedManifest) -> None:
        checks = (
            ({d.digest for d in parsed.blob_references()}, s.repository_blobs.c, "a blob"),
            ({d.digest for d in parsed.manifests}, s.manifests.c, "a manifest"),
        )
        for wanted, table, what in checks:
            if not wanted:
                continue
            present = set(
                conn.execute(
                    sa.select(table.digest).where(table.repository_id == repo_id, table.digest.in_(wanted))
                ).scalars()
            )
            missing = sorted(wanted - present)
            if missing:
                raise ManifestBlobUnknown(
                    f"manifest references {what} unknown to the repository", {"digest": missing[0], "missing": missing}
                )

    def _store(self, conn: sa.Connection, repo_id: int, digest: str, body: bytes, parsed: ParsedManifest) -> int:
        existing = conn.execute(
            sa.select(s.manifests.c.id).where(s.manifests.c.repository_id == repo_id, s.manifests.c.digest == digest)
        ).scalar()
        if existing is not None:
            return int(existing)
        annotations = json.dumps(parsed.annotations) if parsed.annotations else None
        # RETURNING tells whether this statement inserted the row (rowcount is not reliable for
        # INSERT … ON CONFLICT across drivers).
        inserted = conn.execute(
            self.db.insert_ignore(
                s.manifests,
                repository_id=repo_id,
                digest=digest,
                media_type=parsed.media_type,
                artifact_type=parsed.effective_artifact_type(),
                subject_digest=parsed.subject.digest if parsed.subject else None,
                annotations=annotations,
                size=len(body),
                content=body,
                created_at=now(),
            ).returning(s.manifests.c.id)
        ).scalar()
        if inserted is None:
            # A concurrent push of the same manifest committed first (PostgreSQL waited for it on the
            # unique key): its transaction recorded the references already.
            return int(
                conn.execute(
                    sa.select(s.manifests.c.id).where(
                        s.manifests.c.repository_id == repo_id, s.manifests.c.digest == digest
                    )
                ).scalar_one()
            )
        manifest_id = int(inserted)
        blob_refs = {d.digest for d in parsed.blob_references()}
        if blob_refs:
            conn.execute(sa.insert(s.manifest_blobs), [{"manifest_id": manifest_id, "digest": d} for d in blob_refs])
        child_refs = {d.digest for d in parsed.manifests}
        if child_refs:
            conn.execute(
                sa.insert(s.manifest_children), [{"manifest_id": manifest_id, "child_digest": d} for d in child_refs]
            )
        return manifest_id

    # --- delete -----------------------------------------------------------------------------
    def delete(self, name: str, reference: str) -> None:
        """By digest: the manifest and every tag on it. By tag: just the tag (OCI v1.1)."""
        check_name(name)
        with self.db.write() as conn:
            repo_id = conn.execute(sa.select(s.repositories.c.id).where(s.repositories.c.name == name)).scalar()
            if is_digest(reference):
                check_digest(reference)
                manifest_id = None
                if repo_id is not None:
                    manifest_id = conn.execute(
                        sa.select(s.manifests.c.id).where(
                            s.manifests.c.repository_id == repo_id, s.manifests.c.digest == reference
                        )
                    ).scalar()
                if manifest_id is None:
                    raise ManifestUnknown("manifest unknown", {"name": name, "reference": reference})
                conn.execute(sa.delete(s.tags).where(s.tags.c.manifest_id == manifest_id))
                conn.execute(sa.delete(s.manifest_blobs).where(s.manifest_blobs.c.manifest_id == manifest_id))
                conn.execute(sa.delete(s.manifest_children).where(s.manifest_children.c.manifest_id == manifest_id))
                conn.execute(sa.delete(s.manifests).where(s.manifests.c.id == manifest_id))
                if self.audit is not None:
                    self.audit.record(conn, "delete", repository=name, digest=reference)
            else:
                check_tag(reference)
                deleted = 0
                if repo_id is not None:
                    deleted = conn.execute(
                        sa.delete(s.tags).where(s.tags.c.repository_id == repo_id, s.tags.c.name == reference)
                    ).rowcount
                if not deleted:
                    raise ManifestUnknown("tag unknown", {"name": name, "reference": reference})
                if self.audit is not None:
                    self.audit.record(conn, "delete", repository=name, reference=reference)

    # --- referrers --------------------------------------------------------------------------
    def referrers(self, name: str, digest: str, artifact_type: str | None = None) -> dict[str, object]:
        """The OCI image index listing manifests whose subject is `digest`."""
        check_name(name)
        check_digest(digest)
        m = s.manifests.c
        q = (
            sa.select(m.digest, m.media_type, m.size, m.artifact_type, m.annotations)
            .select_from(s.manifests.join(s.repositories))
            .where(s.repositories.c.name == name, m.subject_digest == digest)
            .order_by(m.created_at, m.id)
        )
        if artifact_type is not None:
            q = q.where(m.artifact_type == artifact_type)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        descriptors = []
        for row in rows:
            d: dict[str, object] = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
            if row.artifact_type:
                d["artifactType"] = row.artifact_type
            if row.annotations:
                d["annotations"] = json.loads(row.annotations)
            descriptors.append(d)
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
