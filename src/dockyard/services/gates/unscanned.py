"""Gate: a project may refuse images not scanned yet (`block_unscanned`)."""

from __future__ import annotations

from typing import Any

from dockyard.services.gates.model import Refusal, Stage, Subject
from dockyard.services.gates.scan_policy import SCANNED, ScanPolicies


def _scanned_against_nothing(row: Any) -> bool:
    """A built-in scan matched against a database without advisories (0 recorded, or generation 0 on
    rows from before the count was recorded): its "no findings" means nothing was checked."""
    if row.status != "done" or row.scanner not in (None, "dockyard") or row.vulndb_generation is None:
        return False
    if row.vulndb_advisories is not None:
        return bool(row.vulndb_advisories == 0)
    return bool(row.vulndb_generation == 0)


class UnscannedGate:
    name = "unscanned"
    stages = frozenset({Stage.PULL})

    def __init__(self, policies: ScanPolicies) -> None:
        self.policies = policies

    def forget(self, project: str | None = None) -> None:
        self.policies.forget(project)

    def evaluate(self, subject: Subject) -> Refusal | None:
        if not self.policies.policy(subject.project).block_unscanned:
            return None
        scans = self.policies.scans(subject)
        unscanned = [d for d in subject.images if d not in scans or scans[d].status not in SCANNED]
        if unscanned:
            return Refusal(
                self.name,
                f"image {unscanned[0]} has not been scanned yet; project policy refuses unscanned images",
                "wait for the scan to finish, or scan it (POST …/scan)",
                {"digest": unscanned[0], "policy": "block_unscanned"},
            )
        blind = [d for d in subject.images if _scanned_against_nothing(scans[d])]
        if blind:
            return Refusal(
                self.name,
                f"image {blind[0]} was scanned against an empty vulnerability database, which is no scan; "
                "project policy refuses unscanned images",
                "load a vulnerability database (dockyard vulndb update) and scan again",
                {"digest": blind[0], "policy": "block_unscanned", "reason": "empty vulnerability database"},
            )
        return None
