"""A project's scanning rules, cached per replica, and the image scans the scanning gates judge.

Asked on every manifest GET, so a project's rules are remembered for `ttl` seconds and a project
without any blocking rule costs one dictionary lookup. The rules are asked of the owner of
`projects` (ProjectService) on a miss; the scan results are the scanner's own tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.gates.model import Subject
from dockyard.services.memo import TtlMemo

SCANNED = ("done", "unsupported")  # unsupported: an artifact, nothing to scan


@dataclass(frozen=True)
class ProjectScanPolicy:
    block_severity: str | None
    block_unscanned: bool
    allowlist: frozenset[str]
    licence_denylist: frozenset[str]
    block_denied_licences: bool


NO_POLICY = ProjectScanPolicy(None, False, frozenset(), frozenset(), False)


class ScanRules(Protocol):
    """Where a project's scanning rules are read: ProjectService, owner of `projects`."""

    def find_scan_policy(self, name: str) -> dict[str, Any] | None: ...


class ScanPolicies:
    def __init__(self, db: Database, projects: ScanRules, system_allowlist: list[str] | None = None, ttl: float = 1.0):
        self.db = db
        self.projects = projects
        self.system_allowlist = frozenset(system_allowlist or ())
        self._memo: TtlMemo[str, ProjectScanPolicy] = TtlMemo(ttl)

    def forget(self, project: str | None = None) -> None:
        self._memo.forget(project)

    def policy(self, project: str) -> ProjectScanPolicy:
        return self._memo.get(project, lambda: self._read(project))

    def _read(self, project: str) -> ProjectScanPolicy:
        rules = self.projects.find_scan_policy(project)
        policy = (
            NO_POLICY
            if rules is None
            else ProjectScanPolicy(
                rules["block_severity"],
                rules["block_unscanned"],
                frozenset(rules["vulnerability_allowlist"]),
                frozenset(rules["licence_denylist"]),
                rules["block_denied_licences"],
            )
        )
        return policy

    def scans(self, subject: Subject) -> dict[str, Any]:
        """The scan rows of the subject's images by digest (absent: never scanned), read once."""
        if "scans" not in subject.memo:
            c = s.image_scans.c
            with self.db.engine.connect() as conn:  # on its own connection: asked outside any transaction
                subject.memo["scans"] = {
                    r.digest: r
                    for r in conn.execute(
                        sa.select(
                            c.digest, c.status, c.licences, c.scanner, c.vulndb_generation, c.vulndb_advisories
                        ).where(c.digest.in_(subject.images))
                    )
                }
        scans: dict[str, Any] = subject.memo["scans"]
        return scans
