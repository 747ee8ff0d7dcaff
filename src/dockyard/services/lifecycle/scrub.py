"""Storage scrub: re-read every stored blob and verify its digest, at a limited bandwidth.

A missing or altered blob is reported as an audit event and a metric, so tampering and bit rot do not
go unnoticed. The scrub only reports; what to do about a bad blob is the operator's decision (delete
it from the repositories that hold it, and the clients will push it again).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

from dockyard.services.audit import FAILURE, Actor, AuditLog, acting_as
from dockyard.services.lifecycle import leases
from dockyard.services.registry.blobs import BlobService

SCRUBBER = Actor("system:scrub", "system")
SLEEP_SLICE = 0.5  # seconds: below a quarter of the shortest lease (duty_lease_seconds >= 2)
PROBLEMS = Counter("dockyard_scrub_problems", "Blobs the scrub found missing or altered", ["problem"])
SCRUBBED = Counter("dockyard_scrub_bytes", "Bytes re-read and verified by the scrub")


@dataclass
class ScrubReport:
    blobs: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "blobs": self.blobs,
            "bytes": self.bytes,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "seconds": round(self.seconds, 3),
        }


class Scrubber:
    def __init__(self, blobs: BlobService, audit: AuditLog) -> None:
        self.blobs = blobs  # the registry's blob rows are read through their owner
        self.store = blobs.store
        self.audit = audit

    def run(self, rate_bytes_per_second: float | None = None, batch: int = 500) -> ScrubReport:
        report = ScrubReport()
        started = time.monotonic()
        with acting_as(SCRUBBER):
            for blobs in self.blobs.stored(batch):
                for blob in blobs:
                    leases.heartbeat()  # a scrub runs for hours: keep its lease while it progresses
                    self._check(blob.digest, blob.size, report)
                    if rate_bytes_per_second:
                        # Sleep off any lead over the allowed rate, so pulls keep the disk; in slices
                        # with a heartbeat between, as a sleep after a large blob can outlast the lease
                        # (another replica would take the scrub while this one still runs it).
                        while (ahead := report.bytes / rate_bytes_per_second - (time.monotonic() - started)) > 0:
                            time.sleep(min(ahead, SLEEP_SLICE))
                            leases.heartbeat()
        report.seconds = time.monotonic() - started
        return report

    def _check(self, digest: str, size: int, report: ScrubReport) -> None:
        report.blobs += 1
        algorithm, expected = digest.split(":", 1)
        hasher = hashlib.new(algorithm)
        read = 0
        try:
            for chunk in self.store.open_range(digest):
                hasher.update(chunk)
                read += len(chunk)
        except FileNotFoundError:
            report.missing.append(digest)
            PROBLEMS.labels("missing").inc()
            self.audit.record_now("storage.scrub", result=FAILURE, digest=digest, detail={"problem": "missing"})
            return
        report.bytes += read
        SCRUBBED.inc(read)
        if hasher.hexdigest() != expected or read != size:
            report.corrupt.append(digest)
            PROBLEMS.labels("corrupt").inc()
            self.audit.record_now(
                "storage.scrub",
                result=FAILURE,
                digest=digest,
                detail={"problem": "digest mismatch", "actual": f"{algorithm}:{hasher.hexdigest()}", "size": read},
            )
