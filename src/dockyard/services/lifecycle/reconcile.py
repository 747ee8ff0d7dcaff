"""Storage reconcile: find files in storage that the database does not know (left by a crash, or by
a restore of an older database) and remove them. The one operation that walks storage, on purpose."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.registry.links import lock_blob
from dockyard.storage.base import BlobStore


@dataclass
class ReconcileReport:
    orphans: list[str] = field(default_factory=list)
    bytes: int = 0
    young: int = 0  # unknown files too recent to judge: an upload may be committing them right now
    checked: int = 0


class Reconciler:
    def __init__(self, db: Database, store: BlobStore, min_age: float = 3600.0) -> None:
        self.db = db
        self.store = store
        self.min_age = min_age

    def run(self, dry_run: bool = False) -> ReconcileReport:
        report = ReconcileReport()
        for digest in self.store.list_digests():
            report.checked += 1
            with self.db.read() as conn:
                known = conn.execute(sa.select(s.blobs.c.digest).where(s.blobs.c.digest == digest)).first()
            if known is not None:
                continue
            written = self.store.modified_at(digest)
            if written is None:
                continue
            # An upload moves its bytes into place just before it records them: leave recent files.
            if written > now() - self.min_age:
                report.young += 1
                continue
            size = self.store.stat(digest) or 0
            if not dry_run:
                with self.db.write() as conn:  # under the (absent) row's lock: a late record wins
                    if lock_blob(self.db, conn, digest) is not None:
                        continue
                    self.store.delete(digest)
            report.orphans.append(digest)
            report.bytes += size
        return report
