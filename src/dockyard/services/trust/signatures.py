"""Signatures found in the registry and their verdicts. Owner of `signatures` and
`signature_verdicts`.

- Discovery (`SignatureListener`, a registry listener): a pushed manifest that the verifiers'
  `classify` recognises as a signature becomes a row linking it to the digest it signs — for the
  cosign tag scheme the digest named by its `sha256-<hex>.sig` tag, for referrers its `subject` —
  and is put on the `signatures` work queue, all in the push's transaction.
- Verification (`run`, the `signatures` duty, any number of processes at once): an item's signature
  manifest and the blobs it names are read (each bounded), handed with the project's trust material
  to the pure verifiers (services/trust/formats), and the verdicts replace the old ones in the
  transaction that completes the item. Trust material changes re-queue the signatures they affect.
- Expiry is judged at read time: a verified verdict whose `expires_at` has passed is read as
  expired (by the API and the gates alike), so no window exists in which a lapsed certificate still
  passes; the stored verdict is replaced at the next verification.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.logs import get_logger
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import project_of
from dockyard.services.events import ChangeEvent, Listener, ManifestDeleted, ManifestPushed
from dockyard.services.projects import in_project
from dockyard.services.queue import Claim, WorkQueue
from dockyard.services.registry.catalog import CatalogService
from dockyard.services.trust import formats
from dockyard.services.trust.formats import cosign
from dockyard.services.trust.material import TrustService
from dockyard.services.trust.model import SignatureArtifact, SignatureFormat, SignatureState, Verdict
from dockyard.storage.base import BlobStore

_log = get_logger("dockyard.signatures")

QUEUE = "signatures"
PENDING = "pending"  # found, not verified yet
# Which state a list shows for an image with several signatures: the most useful first.
STATE_RANK = {
    str(SignatureState.VERIFIED): 0,
    str(SignatureState.EXPIRED): 1,
    str(SignatureState.UNTRUSTED): 2,
    str(SignatureState.INVALID): 3,
    PENDING: 4,
}
MAX_BLOBS = 16  # blobs read per signature manifest


def tag_subject(tag: str | None) -> str | None:
    """The digest a cosign tag-scheme tag names (`sha256-<hex>.sig`, `.att`, `.sbom` → `sha256:<hex>`)."""
    return cosign.tagged_subject(tag)


@dataclass(frozen=True)
class SignatureInfo:
    digest: str  # the signature manifest's
    subject: str  # the digest it signs
    format: str
    state: str  # verified | invalid | untrusted | expired | pending
    signer: str | None
    message: str
    verified_at: float | None
    expires_at: float | None


def _state(state: str, expires_at: float | None, t: float) -> str:
    if state == SignatureState.VERIFIED and expires_at is not None and expires_at <= t:
        return SignatureState.EXPIRED
    return state


class SignatureService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        trust: TrustService,
        catalog: CatalogService,
        max_blob_bytes: int = 1024 * 1024,
        queue: WorkQueue | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.trust = trust
        self.catalog = catalog  # the registry owns the manifests: it answers what a signature manifest holds
        self.max_blob_bytes = max_blob_bytes
        self.queue = queue or WorkQueue(db, QUEUE, processing_seconds=300.0, retries=3)
        trust.on_change = self.requeue

    # --- discovery, in the push's transaction ----------------------------------------------------
    def discovered(self, conn: Connection, event: ManifestPushed) -> None:
        if event.subject is None and tag_subject(event.tag) is None:
            return  # neither a referrer nor in cosign's tag scheme: no signature, and no read
        found = self.catalog.manifest_in(conn, event.repository, event.digest)
        if found is None:
            return
        media_type, content = found
        kind = formats.classify(media_type, content, event.tag)
        if kind is None:
            return
        subject = formats.signed_digest(kind, content, event.tag) or event.subject
        if subject is None:
            return
        sig = s.signatures.c
        conn.execute(
            self.db.insert_ignore(
                s.signatures,
                repository=event.repository,
                signature_digest=event.digest,
                subject_digest=subject,
                format=str(kind),
                discovered_at=now(),
            )
        )
        sig_id = conn.execute(
            sa.select(sig.id).where(sig.repository == event.repository, sig.signature_digest == event.digest)
        ).scalar_one()
        self._enqueue(conn, int(sig_id))

    def _enqueue(self, conn: Connection, signature_id: int) -> None:
        self.queue.put(conn, {"id": signature_id}, key=str(signature_id))

    def removed(self, conn: Connection, repository: str, digest: str) -> None:
        sig = s.signatures.c
        ids = conn.execute(
            sa.select(sig.id).where(sig.repository == repository, sig.signature_digest == digest)
        ).scalars()
        for sig_id in ids.all():
            self.queue.cancel(conn, str(sig_id))
            conn.execute(sa.delete(s.signature_verdicts).where(s.signature_verdicts.c.signature_id == sig_id))
            conn.execute(sa.delete(s.signatures).where(sig.id == sig_id))

    def requeue(self, conn: Connection, project: str | None) -> int:
        """Verify again every signature in `project` (None: every signature), after its trust
        material changed; in the caller's transaction."""
        sig = s.signatures.c
        q = sa.select(sig.id)
        if project is not None:
            q = q.where(in_project(sig.repository, project))
        ids = conn.execute(q).scalars().all()
        for sig_id in ids:
            self._enqueue(conn, int(sig_id))
        return len(ids)

    # --- verification ----------------------------------------------------------------------------
    def pending(self) -> int:
        return self.queue.pending()

    def run(self, limit: int = 100) -> int:
        """Verify queued signatures (the `signatures` duty). Returns how many were verified."""
        return self.queue.work(self._verify_item, limit).completed

    def _read_blob(self, digest: str) -> bytes | None:
        size = self.store.stat(digest)
        if size is None or size > self.max_blob_bytes:
            return None
        return b"".join(self.store.open_range(digest, 0, size))

    def artifact(self, repository: str, digest: str, kind: SignatureFormat) -> SignatureArtifact | str:
        """The signature manifest and its blobs, or why they cannot be read (a verdict's message)."""
        with self.db.read() as conn:
            found = self.catalog.manifest_in(conn, repository, digest)
        if found is None:
            return "the signature manifest is no longer stored"
        media_type, content = found
        try:
            parsed = parse_manifest(content, media_type, max_bytes=None)  # admitted at push time
        except InvalidManifest as exc:
            return f"the signature manifest does not parse: {exc.message}"
        # The layers hold the signatures; cosign's config lists their payloads, so it is read too.
        if len(parsed.layers) > MAX_BLOBS:
            return f"the signature manifest names more than {MAX_BLOBS} layers"
        wanted = ([parsed.config] if parsed.config is not None else []) + list(parsed.layers)
        blobs: dict[str, bytes] = {}
        for descriptor in wanted:
            if descriptor.size > self.max_blob_bytes:
                return f"blob {descriptor.digest} is {descriptor.size} bytes, over the limit of {self.max_blob_bytes}"
            data = self._read_blob(descriptor.digest)
            if data is None:
                return f"blob {descriptor.digest} is missing or over the size limit"
            blobs[descriptor.digest] = data
        return SignatureArtifact(kind, digest, content, blobs)

    def _verify_item(self, claim: Claim) -> None:
        sig = s.signatures.c
        with self.db.read() as conn:
            row = conn.execute(sa.select(s.signatures).where(sig.id == int(claim.item.body["id"]))).first()
        if row is None:
            return  # the signature went with its manifest: nothing to verify
        kind = SignatureFormat(row.format)
        t = now()
        found = self.artifact(row.repository, row.signature_digest, kind)
        if isinstance(found, str):
            verdicts = [Verdict(kind, row.signature_digest, SignatureState.INVALID, None, found)]
        else:
            verdicts = formats.verify(found, row.subject_digest, self.trust.material(project_of(row.repository)), t)
        with self.db.write() as conn:
            v = s.signature_verdicts
            conn.execute(sa.delete(v).where(v.c.signature_id == row.id))
            if verdicts:
                conn.execute(
                    sa.insert(v),
                    [
                        {
                            "signature_id": row.id,
                            "position": i,
                            "format": str(verdict.format),
                            "state": str(verdict.state),
                            "signer": verdict.signer,
                            "message": verdict.message[:2000],
                            "expires_at": verdict.expires_at,
                            "verified_at": t,
                        }
                        for i, verdict in enumerate(verdicts)
                    ],
                )
            claim.complete(conn)

    # --- reads -----------------------------------------------------------------------------------
    def of(self, repository: str, digest: str) -> list[SignatureInfo]:
        """The signatures of an image in its repository, each verdict its own entry."""
        sig, v = s.signatures.c, s.signature_verdicts.c
        q = (
            sa.select(
                sig.signature_digest,
                sig.subject_digest,
                sig.format,
                v.format.label("vformat"),
                v.state,
                v.signer,
                v.message,
                v.verified_at,
                v.expires_at,
            )
            .select_from(s.signatures.outerjoin(s.signature_verdicts, v.signature_id == sig.id))
            .where(sig.repository == repository, sig.subject_digest == digest)
            .order_by(sig.id, v.position)
        )
        t = now()
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        out = []
        for r in rows:
            if r.state is None:
                out.append(
                    SignatureInfo(
                        r.signature_digest, r.subject_digest, r.format, PENDING, None, "not verified yet", None, None
                    )
                )
                continue
            state = _state(r.state, r.expires_at, t)
            message = r.message if state == r.state else f"{r.message}; expired at {r.expires_at:.0f}"
            out.append(
                SignatureInfo(
                    r.signature_digest,
                    r.subject_digest,
                    r.vformat,
                    state,
                    r.signer,
                    message,
                    r.verified_at,
                    r.expires_at,
                )
            )
        return out

    def states(self, repository: str, digests: Iterable[str]) -> dict[str, str]:
        """The best signature state of each digest in `repository` (verified, then expired, untrusted,
        invalid, pending); digests without a signature are absent. One statement for a page of tags."""
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        sig, v = s.signatures.c, s.signature_verdicts.c
        q = (
            sa.select(sig.subject_digest, v.state, v.expires_at)
            .select_from(s.signatures.outerjoin(s.signature_verdicts, v.signature_id == sig.id))
            .where(sig.repository == repository, sig.subject_digest.in_(wanted))
        )
        t = now()
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        out: dict[str, str] = {}
        for digest, state, expires_at in rows:
            found = PENDING if state is None else _state(state, expires_at, t)
            best = out.get(digest)
            if best is None or STATE_RANK[found] < STATE_RANK[best]:
                out[str(digest)] = found
        return out

    def verified(self, repository: str, digests: Iterable[str]) -> set[str]:
        """Which of these digests carry a verified, unexpired signature in `repository`."""
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        sig, v = s.signatures.c, s.signature_verdicts.c
        t = now()
        q = (
            sa.select(sig.subject_digest)
            .select_from(s.signatures.join(s.signature_verdicts, v.signature_id == sig.id))
            .where(
                sig.repository == repository,
                sig.subject_digest.in_(wanted),
                v.state == str(SignatureState.VERIFIED),
                sa.or_(v.expires_at.is_(None), v.expires_at > t),
            )
            .distinct()
        )
        with self.db.engine.connect() as conn:  # the gates ask outside any transaction
            return {str(d) for d in conn.execute(q).scalars()}

    def is_signature_artifact(
        self, repository: str, digest: str, tag: str | None, content: bytes, media_type: str
    ) -> bool:
        """A signature, attestation or SBOM (never blocked by a gate): a manifest with a `subject`, one
        under a cosign `.sig`/`.att`/`.sbom` tag, or one found as a signature."""
        if tag_subject(tag) is not None:
            return True
        try:
            if parse_manifest(content, media_type, max_bytes=None).subject is not None:
                return True
        except InvalidManifest:
            pass
        sig = s.signatures.c
        with self.db.engine.connect() as conn:
            known = conn.execute(
                sa.select(sig.id).where(sig.repository == repository, sig.signature_digest == digest).limit(1)
            ).first()
            if known is not None:
                return True
            tags = self.catalog.tags_on(conn, repository, digest, prefix="sha256-")
            return any(tag_subject(name) is not None for name in tags)


class SignatureListener(Listener):
    """Finds signatures as they are pushed; forgets them with their manifest."""

    def __init__(self, signatures: SignatureService) -> None:
        self.signatures = signatures

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        match event:
            case ManifestPushed():
                self.signatures.discovered(conn, event)
            case ManifestDeleted():
                self.signatures.removed(conn, event.repository, event.digest)
