"""The collector's queue of candidates (`gc_queue`): what may have become garbage, and when to look."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.events.listener import Listener, Listeners, RegistryListener
from dockyard.services.events.model import BlobDeleted, ChangeEvent, ManifestPushed, TagDeleted, TagMoved
from dockyard.services.registry.repositories import repository_id


def enqueue_gc(db: Database, conn: Connection, kind: str, repo_id: int, digest: str, delay: float) -> None:
    """Ask the collector to look at something that may have become garbage, once `delay` has passed."""
    conn.execute(
        db.upsert(s.gc_queue, ["kind", "repository_id", "digest"], kind=kind, repository_id=repo_id, digest=digest,
                  due_at=now() + delay)
    )  # fmt: skip


class GcBookkeeping(Listener):
    """Queues what a push or delete may have made garbage, in the change's transaction: a manifest
    pushed by digest, the manifest a tag moved away from or was deleted from (each after the grace
    period: a tag, an index or a kept subject may claim it meanwhile), and a blob whose link went.

    The candidates of a manifest delete (its links, children and referrers) are queued by
    `manifest_rows.delete_manifest_rows`, which reads them before it deletes their rows; a new
    link's candidate by `links.link_blob`, which alone knows whether the link is new.
    """

    def __init__(self, db: Database, grace: float = 3600.0) -> None:
        self.db = db
        self.grace = grace

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        match event:
            case ManifestPushed(tag=None):
                self._manifest(conn, event.repository, event.digest)
            case TagMoved():
                self._manifest(conn, event.repository, event.old_digest)
            case TagDeleted():
                self._manifest(conn, event.repository, event.digest)
            case BlobDeleted():
                enqueue_gc(self.db, conn, "blob", 0, event.digest, 0)

    def _manifest(self, conn: Connection, repository: str, digest: str) -> None:
        repo_id = repository_id(conn, repository)
        if repo_id is not None:
            enqueue_gc(self.db, conn, "manifest", repo_id, digest, self.grace)


def with_gc_bookkeeping(db: Database, grace: float, events: RegistryListener | None) -> Listeners:
    """What a registry service (and the collector) tells of its changes: its own garbage-collection
    bookkeeping first, always, then the listeners it was given. The bookkeeping is part of the
    registry's deletion protocol, not an option of the wiring: a service built without listeners
    (a test, a bench, a tool) still queues what its changes make garbage, as `link_blob` and
    `delete_manifest_rows` always have."""
    return Listeners(GcBookkeeping(db, grace), *([events] if events is not None else []))
