"""The audit log as a registry listener: pushes and deletes in their transaction, pulls buffered."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from dockyard.services.audit import AuditLog
from dockyard.services.events.listener import Listener
from dockyard.services.events.model import (
    BlobDeleted,
    ChangeEvent,
    ImageQuarantined,
    ImageReleased,
    ManifestDeleted,
    ManifestPulled,
    ManifestPushed,
    TagDeleted,
)


class AuditListener(Listener):
    """What the audit log has always held of the registry: a push, a delete (by digest or tag), a
    blob delete, a manifest the collector removed, and every pull. Tag moves, blob pushes and
    mounts, and links the collector removes were never audited, and are not."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        record, repo, actor = self.audit.record, event.repository, event.actor
        match event:
            case ManifestPushed():
                record(conn, "push", actor=actor, repository=repo, reference=event.tag, digest=event.digest)
            case ManifestDeleted(collected=True):
                record(conn, "gc.manifest", actor=actor, repository=repo, digest=event.digest)
            case ManifestDeleted():
                record(conn, "delete", actor=actor, repository=repo, digest=event.digest)
            case TagDeleted():
                record(conn, "delete", actor=actor, repository=repo, reference=event.tag)
            case BlobDeleted(collected=False):
                record(conn, "blob.delete", actor=actor, repository=repo, digest=event.digest)
            case ImageQuarantined():
                detail = {"reason": event.reason, "automatic": event.automatic, "advisory": event.advisory}
                record(conn, "quarantine", actor=actor, project=event.project, repository=repo, digest=event.digest,
                       detail=detail)  # fmt: skip
            case ImageReleased():
                record(conn, "quarantine.release", actor=actor, project=event.project, repository=repo,
                       digest=event.digest, detail={"reason": event.reason})  # fmt: skip

    def pulled(self, event: ManifestPulled) -> None:
        # Buffered and written in batches: a pull costs no write transaction.
        self.audit.record_access(
            "pull", actor=event.actor, repository=event.repository, reference=event.tag, digest=event.digest
        )
