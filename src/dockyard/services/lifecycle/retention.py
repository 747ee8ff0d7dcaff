"""Retention policies per project: which tags to keep, the rest removed, with a dry run.

Rules combine as "keep if any keep rule keeps it": the N most recently pushed tags per repository,
tags pushed or pulled within the last D days, tags matching patterns. A policy with no keep rule keeps
everything (a policy never empties a project by omission). Immutable tags are always kept.
`remove_untagged` also removes manifests that no tag, index or kept subject holds. Removals go
through the same delete path as the API, so they are audited (as `system:retention`) and their
garbage is collected as usual.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.audit import Actor, AuditLog, acting_as
from dockyard.services.errors import InvalidInput, ManifestUnknown
from dockyard.services.lifecycle import leases
from dockyard.services.lifecycle.tag_rules import immutable_rule
from dockyard.services.projects import ProjectService
from dockyard.services.registry.catalog import CatalogService
from dockyard.services.registry.manifests import ManifestService

RETENTION = Actor("system:retention", "system")


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int | None = None
    keep_days: float | None = None
    keep_patterns: list[str] = field(default_factory=list)
    remove_untagged: bool = False

    def check(self) -> RetentionPolicy:
        if self.keep_last is not None and self.keep_last < 0:
            raise InvalidInput("keep_last must be 0 or more")
        if self.keep_days is not None and self.keep_days < 0:
            raise InvalidInput("keep_days must be 0 or more")
        return self

    @property
    def has_keep_rule(self) -> bool:
        return self.keep_last is not None or self.keep_days is not None or bool(self.keep_patterns)


@dataclass(frozen=True)
class Removal:
    repository: str
    tag: str | None  # None: an untagged manifest
    digest: str
    reason: str


class RetentionService:
    def __init__(self, db: Database, manifests: ManifestService, audit: AuditLog, catalog: CatalogService) -> None:
        self.db = db
        self.manifests = manifests  # removals go through the API's delete path
        self.audit = audit
        self.catalog = catalog

    def set_policy(self, project: str, policy: RetentionPolicy, enabled: bool = True) -> None:
        policy.check()
        with self.db.write() as conn:
            pid = ProjectService.existing_id(conn, project)
            conn.execute(
                self.db.upsert(
                    s.retention_policies,
                    ["project_id"],
                    project_id=pid,
                    policy=json.dumps(asdict(policy)),
                    enabled=enabled,
                    updated_at=now(),
                )
            )
            self.audit.record(conn, "retention.set", project=project, detail={**asdict(policy), "enabled": enabled})

    def get_policy(self, project: str) -> tuple[RetentionPolicy, bool] | None:
        with self.db.read() as conn:
            pid = ProjectService.existing_id(conn, project)
            row = conn.execute(
                sa.select(s.retention_policies.c.policy, s.retention_policies.c.enabled).where(
                    s.retention_policies.c.project_id == pid
                )
            ).first()
        if row is None:
            return None
        return RetentionPolicy(**json.loads(row.policy)), bool(row.enabled)

    def plan(self, project: str, policy: RetentionPolicy | None = None) -> list[Removal]:
        """What the policy would remove now."""
        if policy is None:
            found = self.get_policy(project)
            if found is None:
                return []
            policy = found[0]
        removals: list[Removal] = []
        self.audit.flush()  # this process's queued pull events count as pulls
        cutoff = now() - policy.keep_days * 86400 if policy.keep_days is not None else None
        catalog = self.catalog  # owns the registry's tables: the plan reads them through it
        with self.db.read() as conn:
            for repo_id, repo in catalog.project_repositories(conn, project):
                tags = catalog.tags_by_recency(conn, repo_id)
                pulled: dict[str, float] = {}
                if cutoff is not None:  # the audit log owns the pull history
                    pulled = self.audit.last_pulls(conn, repo, cutoff)
                if policy.has_keep_rule:
                    for rank, tag in enumerate(tags):
                        if self._kept(conn, policy, repo, tag.name, rank, tag.updated_at, pulled, cutoff):
                            continue
                        removals.append(Removal(repo, tag.name, tag.digest, "not kept by any rule"))
                if policy.remove_untagged:
                    removals.extend(
                        Removal(repo, None, digest, "untagged") for digest in catalog.unheld_manifests(conn, repo_id)
                    )
        return removals

    @staticmethod
    def _kept(
        conn: sa.Connection,
        policy: RetentionPolicy,
        repo: str,
        tag: str,
        rank: int,
        pushed: float,
        pulled: dict[str, float],
        cutoff: float | None,
    ) -> bool:
        if policy.keep_last is not None and rank < policy.keep_last:
            return True
        if cutoff is not None and (pushed >= cutoff or tag in pulled):
            return True
        if any(fnmatch.fnmatchcase(tag, p) for p in policy.keep_patterns):
            return True
        return immutable_rule(conn, repo, tag) is not None

    def run(self, project: str, dry_run: bool = False, policy: RetentionPolicy | None = None) -> list[Removal]:
        planned = self.plan(project, policy)
        if dry_run:
            return planned
        done: list[Removal] = []
        with acting_as(RETENTION):
            for removal in planned:
                try:
                    self.manifests.delete(removal.repository, removal.tag or removal.digest)
                    done.append(removal)
                except ManifestUnknown:
                    continue  # moved or deleted meanwhile
            with self.db.write() as conn:
                pid = ProjectService.existing_id(conn, project)
                conn.execute(
                    sa.update(s.retention_policies)
                    .where(s.retention_policies.c.project_id == pid)
                    .values(last_run_at=now())
                )
                self.audit.record(conn, "retention.run", project=project, detail={"removed": len(done)})
        return done

    def run_due(self, interval: float) -> int:
        """Run every enabled policy that has not run within `interval` seconds; returns removals."""
        rp = s.retention_policies.c
        with self.db.read() as conn:
            ids = conn.execute(
                sa.select(rp.project_id).where(
                    rp.enabled.is_(True), sa.or_(rp.last_run_at.is_(None), rp.last_run_at < now() - interval)
                )
            ).scalars()
            due = sorted(ProjectService.names_by_id(conn, ids).values())  # names from the owner of projects
        removed = 0
        for name in due:
            leases.heartbeat()
            removed += len(self.run(name))
        return removed
