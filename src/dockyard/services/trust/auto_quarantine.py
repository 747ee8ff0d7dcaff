"""Automatic quarantine: a project's rule (`auto_quarantine_severity`) that quarantines an image as
soon as a scan, or a re-evaluation after a vulnerability-database update, finds a finding at or
above that severity in it (less the project's and the system's allowlists).

Told by the scan results (ScanResults.after_findings) inside the transaction that stores the
findings, so the image is quarantined exactly when its findings are recorded. An automatic
quarantine is never lifted automatically: a finding that goes away (a re-rated advisory) is for a
person to judge, and releasing is a maintainer's decision, as for a quarantine made by hand.
"""

from __future__ import annotations

import json
from collections.abc import Collection

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.oci.names import project_of
from dockyard.scan.model import severities_at_least, severity_rank
from dockyard.services.gates.scan_policy import ScanPolicies
from dockyard.services.trust.quarantine import QuarantineService


def _holders(conn: sa.Connection, digests: list[str]) -> dict[str, dict[str, str]]:
    """digest -> {project: a repository of it} holding the image, itself or as a child of an index."""
    m, r, mc = s.manifests.c, s.repositories.c, s.manifest_children.c
    direct = (
        sa.select(m.digest.label("image"), r.name)
        .join(s.repositories, r.id == m.repository_id)
        .where(m.digest.in_(digests))
    )
    parents = (
        sa.select(mc.child_digest.label("image"), r.name)
        .select_from(s.manifest_children.join(s.manifests, m.id == mc.manifest_id))
        .join(s.repositories, r.id == m.repository_id)
        .where(mc.child_digest.in_(digests))
    )
    out: dict[str, dict[str, str]] = {}
    for q in (direct, parents):
        for image, repository in conn.execute(q):
            out.setdefault(str(image), {}).setdefault(project_of(str(repository)), str(repository))
    return out


class AutoQuarantine:
    def __init__(self, quarantines: QuarantineService, policies: ScanPolicies) -> None:
        self.quarantines = quarantines
        self.policies = policies

    def findings_changed(self, conn: sa.Connection, digests: Collection[str]) -> int:
        """The findings of these images were just written in `conn`'s transaction: quarantine those a
        project's rule says to. Returns how many quarantines were made."""
        wanted = sorted(set(digests))
        if not wanted:
            return 0
        holders = _holders(conn, wanted)
        rules = self.quarantines.auto_rules(conn, {p for by_project in holders.values() for p in by_project})
        if not rules:
            return 0
        already = {(project, d) for project in rules for d in self.quarantines.quarantined_in(conn, project, wanted)}
        f = s.image_findings.c
        made = 0
        for digest, by_project in sorted(holders.items()):
            for project, repository in sorted(by_project.items()):
                if project not in rules or (project, digest) in already:
                    continue
                rows = conn.execute(
                    sa.select(f.advisory_id, f.aliases, f.package, f.version, f.severity)
                    .where(f.digest == digest, f.severity.in_(severities_at_least(rules[project])))
                    .order_by(f.id)
                ).all()
                allowed = self.policies.policy(project).allowlist | self.policies.system_allowlist
                blocking = [
                    r for r in rows if r.advisory_id not in allowed and not (set(json.loads(r.aliases)) & allowed)
                ]
                if not blocking:
                    continue
                blocking.sort(key=lambda r: severity_rank(r.severity))
                worst = blocking[0]
                more = f" and {len(blocking) - 1} more" if len(blocking) > 1 else ""
                reason = (
                    f"automatic: {worst.advisory_id} ({worst.severity}, {worst.package} {worst.version}){more}; "
                    f"project rule: quarantine at {rules[project]} or above"
                )
                self.quarantines.quarantine(
                    repository, digest, reason, automatic=True, advisory=str(worst.advisory_id), conn=conn
                )
                made += 1
        return made
