"""Queueing scans: a push (or a request) puts the image on the `scan` work queue in its transaction;
`run` claims items from the queue — in any number of processes at once — and evaluates and stores
each image, completing its item in the transaction that stores the result. `image_scans` keeps the
status the API shows (queued → scanning → done | failed | skipped | unsupported); the queue keeps the
work: claims, their renewal and retries."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from dockyard.db.engine import Database, now
from dockyard.logs import get_logger
from dockyard.oci import mediatypes as mt
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import project_of
from dockyard.services.audit import AuditLog
from dockyard.services.errors import NotFound
from dockyard.services.lifecycle import leases
from dockyard.services.projects import ProjectService
from dockyard.services.queue import Claim, ClaimLost, WorkQueue
from dockyard.services.registry.catalog import CatalogService
from dockyard.services.scanning.evaluation import Evaluation, ScanRun
from dockyard.services.scanning.results import ScanResults

_log = get_logger("dockyard.scan")

QUEUE = "scan"
MAX_ATTEMPTS = 3
# A scan's claim on its queue item: renewed while the scan progresses; once it runs out (the scanning
# process died) the image is claimable again. A crash counts as an attempt, so an image that kills
# the scanner every time ends `failed` instead of taking it down forever.
CLAIM_SECONDS = 600.0


def scan_queue(db: Database) -> WorkQueue:
    # No backoff of its own: a failed scan is retried at the scan duty's next pass (its interval).
    return WorkQueue(db, QUEUE, processing_seconds=CLAIM_SECONDS, retries=MAX_ATTEMPTS)


class ScanQueueing:
    def __init__(
        self,
        db: Database,
        queue: WorkQueue,
        catalog: CatalogService,
        evaluation: Evaluation,
        results: ScanResults,
        audit: AuditLog,
        projects: ProjectService,
        scan_on_push: bool = True,
    ) -> None:
        self.db = db
        self.projects = projects
        self.queue = queue
        self.catalog = catalog
        self.evaluation = evaluation
        self.results = results
        self.audit = audit
        self.scan_on_push = scan_on_push

    def enqueue(self, conn: sa.Connection, repository: str, digest: str, requested: bool = False) -> None:
        """Queue an image (in the caller's transaction: a push queues its scan as it commits). A known
        image is queued again only when `requested` (on demand: scanned regardless of the project)."""
        if self.results.queued(conn, repository, digest, again=requested):
            body = {"repository": repository, "digest": digest, "requested": requested}
            self.queue.put(conn, body, key=digest)

    def forget(self, conn: sa.Connection, digest: str) -> None:
        """The image is stored nowhere any more: its results go, and so does a scan still queued."""
        self.results.forget(conn, digest)
        self.queue.cancel(conn, digest)

    def request(self, repository: str, digest: str) -> None:
        with self.db.write() as conn:
            self.enqueue(conn, repository, digest, requested=True)

    def pending(self) -> int:
        return self.queue.pending()

    def run(self, limit: int, before: Callable[[], object] | None = None) -> ScanRun:
        """Scan queued images, oldest first, each at most once in this pass (a failed one is retried at
        a later pass). `before` runs first when there is work (the database check)."""
        result = ScanRun()
        for item in self.queue.reap():  # holders died on the item's last attempt
            error = f"the scan stopped without a result {item.attempts} times (did the scanning process die?)"
            with self.db.write() as conn:
                self.results.set_status(conn, item.body["digest"], "failed", error=error)
            _log.warning("scan failed", digest=item.body["digest"], error=error)
            result.failed += 1
        if before is not None and self.queue.pending():
            before()

        def failed(conn: sa.Connection, claim: Claim, exc: Exception, retry: bool) -> None:
            digest, repository = claim.item.body["digest"], claim.item.body["repository"]
            # The one record of this failure (the run's summary only counts it).
            _log.warning(
                "scan failed",
                digest=digest,
                repository=repository,
                error_type=type(exc).__name__,
                error=str(exc),
                attempt=claim.item.attempts,
                will_retry=retry,
            )
            self.results.set_status(
                conn, digest, "queued" if retry else "failed", error=str(exc)[:2000], queued_at=now()
            )
            result.failed += 1

        self.queue.work(lambda claim: self._scan_one(claim, result), limit, on_failure=failed)
        return result

    def _scan_one(self, claim: Claim, out: ScanRun) -> None:
        digest, repository = claim.item.body["digest"], claim.item.body["repository"]
        if not claim.item.body.get("requested") and not self._project_scans_on_push(repository):
            self._finish(claim, digest, "skipped")
            out.skipped += 1
            return
        with self.db.write() as conn:
            self.results.set_status(conn, digest, "scanning")
        found = self.catalog.manifest_content(digest)
        if found is None:
            self._finish(claim, digest, "failed", error="the manifest is no longer stored")
            return
        media_type, body = found
        try:
            parsed = parse_manifest(body, media_type, max_bytes=None)  # admitted at push time
        except InvalidManifest as exc:
            self._finish(claim, digest, "unsupported", error=exc.message)
            out.unsupported += 1
            return
        if parsed.manifests:  # an index: each platform's image is scanned on its own
            with self.db.write() as conn:
                for child in parsed.manifests:
                    self.enqueue(conn, repository, child.digest)
                self.results.set_status(conn, digest, "done", scanned_at=now(), error=None, summary=None)
                claim.complete(conn)
            out.indexes += 1
            return
        if parsed.config is None or parsed.config.media_type not in mt.IMAGE_CONFIGS:
            self._finish(claim, digest, "unsupported", error="not a container image (an artifact)")
            out.unsupported += 1
            return
        try:
            done = self.evaluation.evaluate(repository, digest, media_type, parsed, out)
        except ClaimLost:  # another process scans it now
            raise
        except leases.LeaseLost:  # the duty this runs under stopped: back in the queue, not the image's fault
            with self.db.write() as conn:
                self.results.set_status(conn, digest, "queued")
            raise
        with self.db.write() as conn:
            self.results.store(conn, digest, done.packages, done.distro, done.findings, done.scanner, done.generation)
            self.audit.record(conn, "scan", repository=repository, digest=digest, detail=done.detail)
            claim.complete(conn)  # the result and the end of its work commit together
        out.scanned += 1

    def _finish(self, claim: Claim, digest: str, status: str, **values: object) -> None:
        with self.db.write() as conn:
            self.results.set_status(conn, digest, status, **values)
            claim.complete(conn)

    def _project_scans_on_push(self, repository: str) -> bool:
        try:  # the project's setting, from the service that owns projects
            value = self.projects.scan_policy(project_of(repository))["scan_on_push"]
        except NotFound:
            value = None
        return self.scan_on_push if value is None else bool(value)
