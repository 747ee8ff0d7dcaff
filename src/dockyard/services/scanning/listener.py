"""Scanning as a registry listener: a pushed image is queued for its scan, and the results of an
image go with its last copy."""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dockyard.db import schema as s
from dockyard.services.events import ChangeEvent, Listener, ManifestDeleted, ManifestPushed

# Scan results are stored per digest, whichever repositories hold it.
RESULT_TABLES = (s.image_scans, s.image_findings, s.image_packages, s.finding_aliases)


class ScanQueue(Protocol):
    def enqueue(self, conn: Connection, repository: str, digest: str) -> None: ...


class ScanningListener(Listener):
    def __init__(self, scans: ScanQueue) -> None:
        self.scans = scans

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        match event:
            # An image or an index; an artifact with no config (nothing to unpack) is not scanned.
            case ManifestPushed() if event.config_digest is not None or event.children:
                self.scans.enqueue(conn, event.repository, event.digest)
            case ManifestDeleted():
                self._forget_if_last(conn, event.digest)

    @staticmethod
    def _forget_if_last(conn: Connection, digest: str) -> None:
        m = s.manifests.c
        if conn.execute(sa.select(m.id).where(m.digest == digest).limit(1)).first() is None:
            # The last copy of this image: its scan results describe nothing stored any more.
            for table in RESULT_TABLES:
                conn.execute(sa.delete(table).where(table.c.digest == digest))
