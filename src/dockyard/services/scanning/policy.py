"""The pull gate of scanning: a project may refuse pulls of images with findings at or above a
severity (less an allowlist), of images not scanned yet, and of images carrying denied licences.

Checked on every manifest GET, so the project's policy is cached per replica for `ttl` seconds and a
project without any blocking rule costs one dictionary lookup. The policy is asked of the owner of
`projects` (ProjectService) on a miss; the scan results it judges are the scanner's own tables.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import project_of
from dockyard.scan.model import severities_at_least, severity_rank
from dockyard.services.errors import Denied

_LICENCE_TOKEN = re.compile(r"[A-Za-z0-9.+\-]+")
SCANNED = ("done", "unsupported")  # unsupported: an artifact, nothing to scan


@dataclass(frozen=True)
class ProjectScanPolicy:
    block_severity: str | None
    block_unscanned: bool
    allowlist: frozenset[str]
    licence_denylist: frozenset[str]
    block_denied_licences: bool

    @property
    def blocks_anything(self) -> bool:
        licences = self.block_denied_licences and self.licence_denylist
        return bool(self.block_severity or self.block_unscanned or licences)


NO_POLICY = ProjectScanPolicy(None, False, frozenset(), frozenset(), False)


class ScanPolicies(Protocol):
    """Where the gate reads a project's scanning rules: ProjectService, owner of `projects`."""

    def find_scan_policy(self, name: str) -> dict[str, Any] | None: ...


def denied_licences(expressions: list[str], denylist: frozenset[str]) -> list[str]:
    """The SPDX ids of a deny-list that appear in any of these licence expressions."""
    found: set[str] = set()
    for expression in expressions:
        found |= set(_LICENCE_TOKEN.findall(expression)) & denylist
    return sorted(found)


def _scanned_against_nothing(row: Any) -> bool:
    """A built-in scan matched against a database without advisories (0 recorded, or generation 0 on
    rows from before the count was recorded): its "no findings" means nothing was checked."""
    if row.status != "done" or row.scanner not in (None, "dockyard") or row.vulndb_generation is None:
        return False
    if row.vulndb_advisories is not None:
        return bool(row.vulndb_advisories == 0)
    return bool(row.vulndb_generation == 0)


class PullGate:
    def __init__(
        self, db: Database, projects: ScanPolicies, system_allowlist: list[str] | None = None, ttl: float = 1.0
    ) -> None:
        self.db = db
        self.projects = projects
        self.system_allowlist = frozenset(system_allowlist or ())
        self.ttl = ttl
        self._cache: dict[str, tuple[float, ProjectScanPolicy]] = {}
        self._lock = threading.Lock()

    def forget(self, project: str | None = None) -> None:
        """Drop cached policies (this replica changed one)."""
        with self._lock:
            if project is None:
                self._cache.clear()
            else:
                self._cache.pop(project, None)

    def policy(self, project: str) -> ProjectScanPolicy:
        now = time.monotonic()
        cached = self._cache.get(project)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
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
        with self._lock:
            self._cache[project] = (now, policy)
        return policy

    def check(self, repository: str, digest: str, media_type: str, content: bytes) -> None:
        """Raise Denied, naming the reason, when the project's policy refuses this pull."""
        policy = self.policy(project_of(repository))
        if not policy.blocks_anything:
            return
        images = [digest]
        try:
            parsed = parse_manifest(content, media_type, max_bytes=None)  # admitted at push time
            if parsed.manifests:  # an index is refused when any of its images is
                images = [d.digest for d in parsed.manifests]
        except InvalidManifest:
            pass
        c, f = s.image_scans.c, s.image_findings.c
        with self.db.engine.connect() as conn:
            scans = {
                r.digest: r
                for r in conn.execute(
                    sa.select(
                        c.digest, c.status, c.licences, c.scanner, c.vulndb_generation, c.vulndb_advisories
                    ).where(c.digest.in_(images))
                )
            }
            if policy.block_unscanned:
                unscanned = [d for d in images if d not in scans or scans[d].status not in SCANNED]
                if unscanned:
                    raise Denied(
                        f"image {unscanned[0]} has not been scanned yet; project policy refuses unscanned images",
                        {"digest": unscanned[0], "policy": "block_unscanned"},
                    )
                blind = [d for d in images if _scanned_against_nothing(scans[d])]
                if blind:
                    raise Denied(
                        f"image {blind[0]} was scanned against an empty vulnerability database, which is no scan; "
                        "project policy refuses unscanned images",
                        {"digest": blind[0], "policy": "block_unscanned", "reason": "empty vulnerability database"},
                    )
            if policy.block_severity:
                wanted = severities_at_least(policy.block_severity)
                rows = conn.execute(
                    sa.select(f.advisory_id, f.aliases, f.package, f.version, f.severity)
                    .where(f.digest.in_(images), f.severity.in_(wanted))
                    .order_by(f.id)
                ).all()
                allowed = policy.allowlist | self.system_allowlist
                blocking = [
                    r for r in rows if r.advisory_id not in allowed and not (set(json.loads(r.aliases)) & allowed)
                ]
                if blocking:
                    blocking.sort(key=lambda r: severity_rank(r.severity))
                    named = ", ".join(f"{r.advisory_id} ({r.severity}, {r.package} {r.version})" for r in blocking[:5])
                    more = f" and {len(blocking) - 5} more" if len(blocking) > 5 else ""
                    raise Denied(
                        f"pull refused by project policy: {len(blocking)} findings at or above "
                        f"{policy.block_severity.upper()}: {named}{more}",
                        {"policy": "block_severity", "findings": [r.advisory_id for r in blocking[:50]]},
                    )
            if policy.block_denied_licences and policy.licence_denylist:
                denied = denied_licences(
                    [e for row in scans.values() for e in json.loads(row.licences or "[]")], policy.licence_denylist
                )
                if denied:
                    raise Denied(
                        f"pull refused by project policy: denied licences {', '.join(denied)}",
                        {"policy": "licence_denylist", "licences": denied},
                    )
