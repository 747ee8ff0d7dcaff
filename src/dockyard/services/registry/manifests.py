"""Manifests and indexes: push with reference checks, pull by tag or digest, delete, referrers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest, is_digest
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import ParsedManifest, parse_manifest
from dockyard.services.errors import (
    Conflict,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    TagInvalid,
    TooLarge,
)
from dockyard.services.events import (
    ManifestDeleted,
    ManifestPulled,
    ManifestPushed,
    RegistryListener,
    TagDeleted,
    TagMoved,
)
from dockyard.services.lifecycle.tag_rules import refuse_if_immutable
from dockyard.services.registry.gc_queue import with_gc_bookkeeping
from dockyard.services.registry.manifest_rows import delete_manifest_rows
from dockyard.services.registry.read_cache import ContentCache, StampedCache
from dockyard.services.registry.repositories import ensure_repository, note_push, repository_id
from dockyard.services.registry.validation import check_digest, check_name, check_tag

if TYPE_CHECKING:
    from dockyard.services.auth.identity import Identity
    from dockyard.services.gates.chain import GateChain


def _existing_tag(name: str, reference: str) -> None:
    """A read or delete by a reference that is no valid tag asks for something that cannot exist:
    404 MANIFEST_UNKNOWN, as the reference registry and clients expect (only a push is told its
    tag is invalid)."""
    try:
        check_tag(reference)
    except TagInvalid as exc:
        raise ManifestUnknown(f"manifest unknown: {exc.message}", {"name": name, "reference": reference}) from None


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
    def __init__(
        self,
        db: Database,
        max_bytes: int = 4 * 1024 * 1024,
        events: RegistryListener | None = None,
        grace: float = 3600.0,
    ) -> None:
        self.db = db
        self.max_bytes = max_bytes
        # GET by tag or digest from memory: (repository, reference) -> (digest, media type) while the
        # database has not changed, and the bytes by digest (immutable).
        self._resolved: StampedCache[tuple[str, str], tuple[str, str]] = StampedCache(db.changes)
        self._content = ContentCache()
        # Told of pushes, tag moves and deletes in their transactions (the collector's queue, always;
        # then the listeners given: audit, scans, the outbox), and of pulls after the read.
        self.events = with_gc_bookkeeping(db, grace, events)
        # The tag-time gates (signed tags), asked before a push by tag stores anything; set by wiring.
        self.gates: GateChain | None = None
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
        hit = self._resolved.get((name, reference))  # only valid names and references are stored
        if hit is not None:
            content = self._content.get(hit[0])
            if content is not None:
                return StoredManifest(hit[0], hit[1], content)
        check_name(name)
        if is_digest(reference):
            check_digest(reference)
            query = self._by_digest
        else:
            _existing_tag(name, reference)
            query = self._by_tag
        stamp = self._resolved.stamp()  # before the read: a change committed after it moves the stamp
        with self.db.engine.connect() as conn:
            row = conn.execute(query, {"name": name, "ref": reference}).first()
        if row is None:
            raise ManifestUnknown("manifest unknown", {"name": name, "reference": reference})
        found = StoredManifest(row.digest, row.media_type, bytes(row.content))
        self._content.put(found.digest, found.content)
        self._resolved.put(stamp, (name, reference), (found.digest, found.media_type))
        return found

    def pulled(self, name: str, reference: str, digest: str) -> None:
        """Tell the listeners a manifest was served (GET, once the pull gate let it through). No
        transaction: GET by tag stays one read, and listeners buffer what they keep."""
        tag = None if is_digest(reference) else reference
        self.events.pulled(ManifestPulled(repository=name, digest=digest, tag=tag))

    # --- push -------------------------------------------------------------------------------
    def put(
        self, name: str, reference: str, body: bytes, content_type: str | None, caller: Identity | None = None
    ) -> PushResult:
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
            # A push must declare its type: "" (no Content-Type) is refused, unlike None (trusted).
            parsed = parse_manifest(body, content_type or "", self.max_bytes)
        except InvalidManifest as exc:
            raise ManifestInvalid(exc.message, exc.detail) from None
        if tag is not None and self.gates is not None:
            from dockyard.services.gates.model import Stage, Subject  # the gates import the registry's peers

            self.gates.enforce(Stage.TAG, Subject(name, digest, parsed.media_type, body, tag=tag, caller=caller))

        with self.db.write() as conn:
            repo_id = ensure_repository(self.db, conn, name)
            self._check_references(conn, repo_id, parsed)
            manifest_id = self._store(conn, repo_id, digest, body, parsed)
            moved_from = self._set_tag(conn, name, repo_id, tag, manifest_id) if tag is not None else None
            self.events.changed(
                conn,
                pushed_event(name, digest, tag, parsed, len(body)),
            )
            if moved_from is not None:
                assert tag is not None
                self.events.changed(conn, TagMoved(repository=name, digest=digest, tag=tag, old_digest=moved_from))
            note_push(conn, repo_id)
        return PushResult(digest, parsed.subject.digest if parsed.subject else None)

    def _set_tag(self, conn: sa.Connection, name: str, repo_id: int, tag: str, manifest_id: int) -> str | None:
        """Point `tag` at the manifest; returns the digest it pointed at before when it moved."""
        t = s.tags.c
        old_stmt = sa.select(t.manifest_id).where(t.repository_id == repo_id, t.name == tag)
        if not self.db.is_sqlite:
            old_stmt = old_stmt.with_for_update()
        # Until the tag is either inserted by us or found and locked. An INSERT that finds a concurrent
        # push's row does nothing and locks nothing, so a delete may remove that row before we look
        # again (PostgreSQL, READ COMMITTED): then insert again. Taking "no row" as "nothing to move"
        # once updated nothing and left the pushed manifest untagged and unqueued (the GC stress flake).
        while (old := conn.execute(old_stmt).scalar()) is None:
            inserted = conn.execute(
                self.db.insert_ignore(
                    s.tags, repository_id=repo_id, name=tag, manifest_id=manifest_id, updated_at=now()
                ).returning(t.name)
            ).scalar()
            if inserted is not None:
                return None
        previous = None
        if old != manifest_id:
            refuse_if_immutable(conn, name, tag, "moved to another manifest")
            previous = conn.execute(sa.select(s.manifests.c.digest).where(s.manifests.c.id == old)).scalar()
        conn.execute(
            sa.update(s.tags)
            .where(t.repository_id == repo_id, t.name == tag)
            .values(manifest_id=manifest_id, updated_at=now())
        )
        return previous

    def _check_references(self, conn: sa.Connection, repo_id: int, parsed: ParsedManifest) -> None:
        """Every blob and child manifest must be in the repository, with the size its descriptor
        claims (a client trusts that size before it fetches the bytes). Their rows are share-locked
        until commit, so the collector cannot remove them between this check and the insert."""
        blobs = {d.digest: d.size for d in parsed.blob_references()}
        children = {d.digest: d.size for d in parsed.manifests}
        rb, b, m = s.repository_blobs.c, s.blobs.c, s.manifests.c
        blob_q = (
            sa.select(rb.digest, b.size)
            .select_from(s.repository_blobs.join(s.blobs, b.digest == rb.digest))
            .where(rb.repository_id == repo_id, rb.digest.in_(sorted(blobs)), b.status == "ok")
            .order_by(rb.digest)
        )
        child_q = (
            sa.select(m.digest, m.size)
            .where(m.repository_id == repo_id, m.digest.in_(sorted(children)))
            .order_by(m.digest)
        )
        if not self.db.is_sqlite:
            blob_q = blob_q.with_for_update(read=True, of=s.blobs)
            child_q = child_q.with_for_update(read=True)
        refs = [(d.digest, d.size) for d in (*parsed.blob_references(), *parsed.manifests)]
        present: dict[str, int] = {}
        for wanted, query, what in ((blobs, blob_q, "a blob"), (children, child_q, "a manifest")):
            if not wanted:
                continue
            present.update({str(row.digest): int(row.size) for row in conn.execute(query)})
            missing = sorted(set(wanted) - set(present))
            if missing:
                raise ManifestBlobUnknown(
                    f"manifest references {what} unknown to the repository", {"digest": missing[0], "missing": missing}
                )
        for digest, size in refs:  # the same digest may appear twice: every descriptor must be right
            if present[digest] != size:
                raise ManifestInvalid(
                    f"descriptor of {digest} says {size} bytes, the stored content has {present[digest]}",
                    {"digest": digest, "size": size, "stored_size": present[digest]},
                )

    def _store(self, conn: sa.Connection, repo_id: int, digest: str, body: bytes, parsed: ParsedManifest) -> int:
        existing_q = sa.select(s.manifests.c.id).where(
            s.manifests.c.repository_id == repo_id, s.manifests.c.digest == digest
        )
        if not self.db.is_sqlite:  # keep the collector off it until this push commits
            existing_q = existing_q.with_for_update(read=True)
        existing = conn.execute(existing_q).scalar()
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
                for tag in conn.execute(sa.select(s.tags.c.name).where(s.tags.c.manifest_id == manifest_id)).scalars():
                    refuse_if_immutable(conn, name, tag, "deleted")
                assert repo_id is not None
                tags = delete_manifest_rows(self.db, conn, int(repo_id), int(manifest_id), reference)
                self.events.changed(conn, ManifestDeleted(repository=name, digest=reference, tags=tags))
            else:
                _existing_tag(name, reference)
                untagged = None
                if repo_id is not None:
                    untagged = conn.execute(
                        sa.delete(s.tags)
                        .where(s.tags.c.repository_id == repo_id, s.tags.c.name == reference)
                        .returning(s.tags.c.manifest_id)
                    ).scalar()
                if untagged is None:
                    raise ManifestUnknown("tag unknown", {"name": name, "reference": reference})
                refuse_if_immutable(conn, name, reference, "deleted")  # raising rolls the delete back
                previous = conn.execute(
                    sa.select(s.manifests.c.digest).where(s.manifests.c.id == untagged)
                ).scalar_one()
                self.events.changed(conn, TagDeleted(repository=name, digest=previous, tag=reference))

    # --- retag (tag revert) ---------------------------------------------------------------
    def retag(
        self,
        name: str,
        tag: str,
        digest: str,
        check: Callable[[sa.Connection, str | None], None] | None = None,
    ) -> str | None:
        """Point `tag` at the stored manifest `digest` of `name` (a revert: no upload, no body), under
        the rules of a push by tag: the manifest row is share-locked as a push re-using it is, so the
        collector cannot remove it meanwhile; an immutable tag is not moved. `check(conn, current)` runs
        in the transaction once the tag is locked (`current`: the digest it points at, None if absent);
        raising rolls everything back. Returns the digest the tag left (None: it was absent); raises
        Conflict when the manifest is no longer stored. A tag already there is left alone."""
        check_name(name)
        check_tag(tag)
        check_digest(digest)
        m, t = s.manifests.c, s.tags.c
        with self.db.write() as conn:
            repo_id = repository_id(conn, name)
            stmt = sa.select(m.id, m.media_type, m.content).where(m.repository_id == repo_id, m.digest == digest)
            if not self.db.is_sqlite:
                stmt = stmt.with_for_update(read=True)  # as a push re-using the manifest: keeps the collector off
            row = conn.execute(stmt).first() if repo_id is not None else None
            if row is None:
                raise Conflict(
                    f"manifest {digest} is no longer stored in {name!r}", {"repository": name, "digest": digest}
                )
            current_q = (
                sa.select(m.digest)
                .select_from(s.tags.join(s.manifests, m.id == t.manifest_id))
                .where(t.repository_id == repo_id, t.name == tag)
            )
            if not self.db.is_sqlite:
                current_q = current_q.with_for_update(of=s.tags)
            current = conn.execute(current_q).scalar()
            if check is not None:
                check(conn, current)
            if current == digest:
                return current
            assert repo_id is not None
            moved_from = self._set_tag(conn, name, repo_id, tag, int(row.id))
            if moved_from is not None:
                self.events.changed(conn, TagMoved(repository=name, digest=digest, tag=tag, old_digest=moved_from))
            else:  # the tag was absent: a new tag on a stored manifest is told as a push by tag is
                parsed = parse_manifest(bytes(row.content), row.media_type, max_bytes=None)
                self.events.changed(conn, pushed_event(name, digest, tag, parsed, len(row.content)))
            note_push(conn, repo_id)
            return moved_from

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


def pushed_event(name: str, digest: str, tag: str | None, parsed: ParsedManifest, size: int) -> ManifestPushed:
    """What a stored manifest (pushed, or newly tagged by a revert) tells the listeners."""
    return ManifestPushed(
        repository=name,
        digest=digest,
        tag=tag,
        media_type=parsed.media_type,
        size=size,
        config_digest=parsed.config.digest if parsed.config is not None else None,
        children=tuple(d.digest for d in parsed.manifests),
        subject=parsed.subject.digest if parsed.subject else None,
    )
