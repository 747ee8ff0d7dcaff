"""Storage reconcile: find files in storage that the database does not know (left by a crash, or by
a restore of an older database) and remove them. The one operation that walks storage, on purpose."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.db.engine import now
from dockyard.services.registry.blobs import BlobService


@dataclass
class ReconcileReport:
    orphans: list[str] = field(default_factory=list)
    bytes: int = 0
    young: int = 0  # unknown files too recent to judge: an upload may be committing them right now
    checked: int = 0


class Reconciler:
    def __init__(self, blobs: BlobService, min_age: float = 3600.0) -> None:
        self.blobs = blobs  # the registry's blob rows are asked of their owner
        self.store = blobs.store
        self.min_age = min_age

    def run(self, dry_run: bool = False) -> ReconcileReport:
        report = ReconcileReport()
        for digest in self.store.list_digests():
            report.checked += 1
            if self.blobs.recorded(digest):
                continue
            written = self.store.modified_at(digest)
            if written is None:
                continue
            # An upload moves its bytes into place just before it records them: leave recent files.
            if written > now() - self.min_age:
                report.young += 1
                continue
            size = self.store.stat(digest) or 0
            if not dry_run and not self.blobs.delete_unrecorded(digest, size):
                continue  # recorded meanwhile: a late upload won
            report.orphans.append(digest)
            report.bytes += size
        return report
