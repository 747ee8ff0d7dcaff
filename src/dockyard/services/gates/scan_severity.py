"""Gate: a project may refuse images with findings at or above a severity, less an allowlist."""

from __future__ import annotations

import json

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.scan.model import severities_at_least, severity_rank
from dockyard.services.gates.model import Refusal, Stage, Subject
from dockyard.services.gates.scan_policy import ScanPolicies


class ScanSeverityGate:
    name = "scan_severity"
    stages = frozenset({Stage.PULL})

    def __init__(self, policies: ScanPolicies) -> None:
        self.policies = policies

    def forget(self, project: str | None = None) -> None:
        self.policies.forget(project)

    def evaluate(self, subject: Subject) -> Refusal | None:
        policy = self.policies.policy(subject.project)
        if not policy.block_severity:
            return None
        f = s.image_findings.c
        with self.policies.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(f.advisory_id, f.aliases, f.package, f.version, f.severity)
                .where(f.digest.in_(subject.images), f.severity.in_(severities_at_least(policy.block_severity)))
                .order_by(f.id)
            ).all()
        allowed = policy.allowlist | self.policies.system_allowlist
        blocking = [r for r in rows if r.advisory_id not in allowed and not (set(json.loads(r.aliases)) & allowed)]
        if not blocking:
            return None
        blocking.sort(key=lambda r: severity_rank(r.severity))
        named = ", ".join(f"{r.advisory_id} ({r.severity}, {r.package} {r.version})" for r in blocking[:5])
        more = f" and {len(blocking) - 5} more" if len(blocking) > 5 else ""
        return Refusal(
            self.name,
            f"pull refused by project policy: {len(blocking)} findings at or above "
            f"{policy.block_severity.upper()}: {named}{more}",
            "rebuild the image with fixed packages, or allowlist the advisories in the project's scan policy",
            {"policy": "block_severity", "findings": [r.advisory_id for r in blocking[:50]]},
        )
