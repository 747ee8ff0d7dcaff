"""Scanning as a registry listener: a pushed image is queued for its scan, and the results of an
image go with its last copy."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import Connection

from dockyard.services.events import ChangeEvent, Listener, ManifestDeleted, ManifestPushed


class Scans(Protocol):
    def enqueue(self, conn: Connection, repository: str, digest: str) -> None: ...

    def forget(self, conn: Connection, digest: str) -> None: ...


class Stored(Protocol):
    def stored(self, conn: Connection, digest: str) -> bool: ...


class ScanningListener(Listener):
    def __init__(self, scans: Scans, catalog: Stored) -> None:
        self.scans = scans
        self.catalog = catalog  # the registry owns the manifests: it says whether a digest is still stored

    def changed(self, conn: Connection, event: ChangeEvent) -> None:
        match event:
            # An image or an index; an artifact with no config (nothing to unpack) is not scanned.
            case ManifestPushed() if event.config_digest is not None or event.children:
                self.scans.enqueue(conn, event.repository, event.digest)
            case ManifestDeleted() if not self.catalog.stored(conn, event.digest):
                # The last copy of this image: its results and any queued scan describe nothing stored.
                self.scans.forget(conn, event.digest)
