"""Scanning images stored in the registry, as one service for its callers (the HTTP API, the CLI, the
maintenance loop). The work is split along its seams:

- queueing.py: the `scan` work queue (services/queue): enqueue on push or request, claim and run;
- evaluation.py: layer inventories (once per layer digest), matching, re-evaluation when the
  vulnerability database changes;
- results.py: the stored status, inventory and findings, and the exposure queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily

from dockyard.db.engine import Database
from dockyard.scan.matcher import Matcher
from dockyard.scan.model import DEFAULT_STALE_AFTER, DatabaseInfo, ScanResult
from dockyard.scan.vulndb import Snapshot, VulnDB
from dockyard.services.audit import AuditLog
from dockyard.services.lifecycle import leases
from dockyard.services.projects import ProjectService
from dockyard.services.queue import WorkQueue
from dockyard.services.registry.catalog import CatalogService
from dockyard.services.scanning.evaluation import SCANNER_VERSION, Evaluation, Reevaluation, ScanRun
from dockyard.services.scanning.external import HarborAdapterScanner
from dockyard.services.scanning.queueing import CLAIM_SECONDS, MAX_ATTEMPTS, ScanQueueing, scan_queue
from dockyard.services.scanning.results import ScanResults, packages_distro
from dockyard.storage.base import BlobStore

__all__ = [
    "CLAIM_SECONDS",
    "MAX_ATTEMPTS",
    "SCANNER_VERSION",
    "Reevaluation",
    "ScanRun",
    "ScanService",
    "packages_distro",
    "vulndb_metrics",
]

REEVALUATE = "reevaluate"  # the lease of a re-evaluation: scans run in many processes, it in one


class ScanService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        vulndb: VulnDB,
        audit: AuditLog,
        catalog: CatalogService,
        projects: ProjectService,
        scan_on_push: bool = True,
        external: HarborAdapterScanner | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
        severity_sources: Iterable[str] = (),
        queue: WorkQueue | None = None,
    ) -> None:
        self.db = db
        self.vulndb = vulndb
        self.results = ScanResults(db, vulndb, catalog, stale_after)
        self.evaluation = Evaluation(db, store, vulndb, self.results, audit, external, severity_sources)
        self.queue = queue or scan_queue(db)
        self.queueing = ScanQueueing(
            db, self.queue, catalog, self.evaluation, self.results, audit, projects, scan_on_push
        )
        self._startup_checked = False

    @property
    def external(self) -> HarborAdapterScanner | None:
        return self.evaluation.external

    @property
    def stale_after(self) -> float:
        return self.results.stale_after

    @property
    def matcher(self) -> Matcher:
        return self.evaluation.matcher

    @property
    def severity_sources(self) -> list[str]:
        return self.evaluation.severity_sources

    @severity_sources.setter
    def severity_sources(self, sources: Iterable[str]) -> None:
        self.evaluation.severity_sources = list(sources)

    # -- the queue ------------------------------------------------------------------------------------

    def enqueue(self, conn: sa.Connection, repository: str, digest: str, requested: bool = False) -> None:
        """Queue an image (in the caller's transaction: a push queues its scan as it commits)."""
        self.queueing.enqueue(conn, repository, digest, requested)

    def forget(self, conn: sa.Connection, digest: str) -> None:
        """In the caller's transaction: the last copy of the image was deleted."""
        self.queueing.forget(conn, digest)

    def request(self, repository: str, digest: str) -> None:
        self.queueing.request(repository, digest)

    def pending(self) -> int:
        return self.queueing.pending()

    def run(self, limit: int = 50) -> ScanRun:
        """Scan queued images, oldest first (the scan duty; any number of processes at once).

        First, if the vulnerability database changed since the stored results were computed (an update
        by `dockyard vulndb update` or the API, or while this process was not running), re-evaluate —
        in one process at a time, under its lease.
        """
        if self.refresh() or (not self._startup_checked and self.evaluation.stale_images()):
            try:
                with leases.claimed(self.db, REEVALUATE, leases.holder_name(REEVALUATE), CLAIM_SECONDS):
                    self.reevaluate()
            except leases.LeaseHeld:  # another process re-evaluates now
                pass
        self._startup_checked = True
        return self.queueing.run(limit, before=self.evaluation.check_database)

    # -- evaluation -----------------------------------------------------------------------------------

    def refresh(self) -> bool:
        return self.evaluation.refresh()

    def update_vulndb(self, sources: Iterable[str]) -> Reevaluation | None:
        return self.evaluation.update_vulndb(sources)

    def reevaluate(self, batch: int = 200) -> Reevaluation:
        return self.evaluation.reevaluate(batch)

    def check_database(self) -> DatabaseInfo:
        return self.evaluation.check_database()

    # -- results --------------------------------------------------------------------------------------

    def database(self, snap: Snapshot | None = None) -> DatabaseInfo:
        return self.results.database(snap)

    def status(self, digest: str) -> dict[str, Any] | None:
        return self.results.status(digest)

    def result(self, digest: str) -> ScanResult | None:
        return self.results.result(digest)

    def images_affected_by(self, advisory: str, limit: int = 1000) -> list[dict[str, Any]]:
        return self.results.images_affected_by(advisory, limit)

    def images_with_package(self, name: str, version: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.results.images_with_package(name, version, limit)

    def findings_of(self, advisory: str) -> list[dict[str, Any]]:
        return self.results.findings_of(advisory)

    def packages_named(self, name: str, version: str | None = None) -> list[dict[str, Any]]:
        return self.results.packages_named(name, version)


def vulndb_metrics(scans: ScanService) -> list[GaugeMetricFamily]:
    """Gauges of this replica's vulnerability database, for /metrics (read at scrape time)."""
    info = scans.database()
    advisories = GaugeMetricFamily("dockyard_vulndb_advisories", "Advisories in the vulnerability database")
    advisories.add_metric([], info.advisories)
    generation = GaugeMetricFamily("dockyard_vulndb_generation", "The vulnerability database's generation")
    generation.add_metric([], info.generation)
    age = GaugeMetricFamily(
        "dockyard_vulndb_age_seconds", "Seconds since the vulnerability sources were last read successfully"
    )
    if info.age_seconds is not None:
        age.add_metric([], info.age_seconds)
    stale = GaugeMetricFamily(
        "dockyard_vulndb_stale", "1 when the vulnerability database is empty or stale (scans cannot be trusted)"
    )
    stale.add_metric([], 0 if info.state == "current" else 1)
    return [advisories, generation, age, stale]
