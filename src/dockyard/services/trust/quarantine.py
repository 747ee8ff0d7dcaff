"""Quarantine: images withheld from pulls until someone releases them (docs/quarantine.md).

A quarantine is per project and digest: the image is withheld in every repository of the project
that holds it (so a copy under another name is not a way round it), and a maintainer's decision
reaches no further than their own project. The pull gate (gates/quarantine.py) asks `active` on
every manifest GET, so each replica remembers a project's quarantined digests for `ttl` seconds;
changes made on this replica apply at once, on others within `ttl`.

Quarantining and releasing are registry events (ImageQuarantined, ImageReleased): the audit log
records them with the reason in the same transaction, and the outbox carries them to webhooks.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci.digest import is_digest
from dockyard.oci.names import project_of
from dockyard.scan.model import SEVERITIES
from dockyard.services.audit import AuditLog, current_actor
from dockyard.services.errors import Conflict, InvalidInput, NotFound
from dockyard.services.events import ImageQuarantined, ImageReleased, Listeners
from dockyard.services.memo import TtlMemo
from dockyard.services.projects import ProjectService

MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class Quarantine:
    project: str
    digest: str
    reason: str
    quarantined_by: str
    quarantined_at: float
    automatic: bool = False
    advisory_id: str | None = None


def _row(project: str, row: sa.Row[tuple[object, ...]]) -> Quarantine:
    m = row._mapping
    return Quarantine(
        project,
        str(m["digest"]),
        str(m["reason"]),
        str(m["quarantined_by"]),
        float(m["quarantined_at"]),
        bool(m["automatic"]),
        m["advisory_id"],
    )


def _project_id(conn: sa.Connection, project: str) -> int:
    pid = ProjectService.id_of(conn, project)  # the owner of `projects` (tests/unit/test_table_owners.py)
    if pid is None:
        raise NotFound(f"project {project!r} does not exist", {"project": project})
    return pid


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON or "\x00" in reason:
        raise InvalidInput(f"a reason of 1 to {MAX_REASON} characters is required", {"field": "reason"})
    return reason


class QuarantineService:
    def __init__(
        self, db: Database, events: Listeners, audit: AuditLog, projects: ProjectService, ttl: float = 1.0
    ) -> None:
        self.db = db
        self.projects = projects
        self.audit = audit
        self.events = events
        self._held: TtlMemo[str, dict[str, Quarantine]] = TtlMemo(ttl)

    # --- what the pull gate asks --------------------------------------------------------------
    def forget(self, project: str | None = None) -> None:
        self._held.forget(project)

    def _in_project(self, project: str) -> dict[str, Quarantine]:
        return self._held.get(project, lambda: self._read(project))

    def _read(self, project: str) -> dict[str, Quarantine]:
        q = s.image_quarantines.c
        with self.db.engine.connect() as conn:  # on its own connection: asked outside any transaction
            pid = ProjectService.id_of(conn, project)
            rows = [] if pid is None else conn.execute(sa.select(s.image_quarantines).where(q.project_id == pid)).all()
        return {str(r.digest): _row(project, r) for r in rows}

    def any_in(self, project: str) -> bool:
        """Whether anything is quarantined in `project`: the pull gate's one dictionary lookup for most pulls."""
        return bool(self._in_project(project))

    def active(self, project: str, digests: Collection[str]) -> list[Quarantine]:
        """The quarantines in `project` of any of these digests (an image, or an index and its children)."""
        held = self._in_project(project)
        if not held:
            return []
        return [held[d] for d in digests if d in held]

    # --- changes ------------------------------------------------------------------------------
    def quarantine(
        self,
        repository: str,
        digest: str,
        reason: str,
        *,
        automatic: bool = False,
        advisory: str | None = None,
        conn: sa.Connection | None = None,
    ) -> Quarantine:
        """Quarantine `digest` in the project of `repository` (the caller checked that the repository
        holds it). Conflict if it already is. `conn`: join the caller's transaction (a scan's)."""
        if not is_digest(digest):
            raise InvalidInput("quarantine names an image by digest, not by tag", {"digest": digest})
        reason = check_reason(reason)
        project = project_of(repository)
        if conn is None:
            with self.db.write() as own:
                made = self._insert(own, repository, project, digest, reason, automatic, advisory)
        else:
            made = self._insert(conn, repository, project, digest, reason, automatic, advisory)
        self.forget(project)
        return made

    def _insert(
        self,
        conn: sa.Connection,
        repository: str,
        project: str,
        digest: str,
        reason: str,
        automatic: bool,
        advisory: str | None,
    ) -> Quarantine:
        pid = _project_id(conn, project)
        q = s.image_quarantines.c
        existing = conn.execute(sa.select(s.image_quarantines).where(q.project_id == pid, q.digest == digest)).first()
        if existing is not None:
            raise Conflict(
                f"image {digest} is already quarantined in project {project!r}",
                {"digest": digest, "reason": existing.reason},
            )
        actor = current_actor()
        made = Quarantine(project, digest, reason, actor.name, now(), automatic, advisory)
        conn.execute(
            sa.insert(s.image_quarantines).values(
                project_id=pid,
                digest=digest,
                reason=reason,
                quarantined_by=made.quarantined_by,
                quarantined_at=made.quarantined_at,
                automatic=automatic,
                advisory_id=advisory,
            )
        )
        self.events.changed(
            conn,
            ImageQuarantined(
                repository=repository,
                digest=digest,
                project=project,
                reason=reason,
                automatic=automatic,
                advisory=advisory,
                actor=actor,
            ),
        )
        return made

    def release(self, repository: str, digest: str) -> Quarantine:
        project = project_of(repository)
        q = s.image_quarantines.c
        with self.db.write() as conn:
            pid = _project_id(conn, project)
            row = conn.execute(sa.select(s.image_quarantines).where(q.project_id == pid, q.digest == digest)).first()
            if row is None:
                raise NotFound(f"image {digest} is not quarantined in project {project!r}", {"digest": digest})
            conn.execute(sa.delete(s.image_quarantines).where(q.project_id == pid, q.digest == digest))
            self.events.changed(
                conn, ImageReleased(repository=repository, digest=digest, project=project, reason=row.reason)
            )
        self.forget(project)
        return _row(project, row)

    # --- reads --------------------------------------------------------------------------------
    def list(self, projects: Collection[str] | None = None, limit: int = 1000) -> list[Quarantine]:
        """Quarantines, newest first; `projects`: only these (None: all)."""
        q = s.image_quarantines.c
        names = {
            p.id: p.name
            for p in self.projects.list_projects(None if projects is None else set(projects))
            if projects is None or p.name in projects
        }
        if not names:
            return []
        stmt = sa.select(s.image_quarantines).where(q.project_id.in_(sorted(names)))
        with self.db.read() as conn:
            rows = conn.execute(stmt.order_by(q.quarantined_at.desc(), q.digest).limit(limit)).all()
        return [_row(names[int(r.project_id)], r) for r in rows]

    def counts_by_repository(self, project: str) -> dict[str, int]:
        """Repository name -> how many quarantined images (manifests) of the project it holds."""
        q, r, m = s.image_quarantines.c, s.repositories.c, s.manifests.c
        with self.db.read() as conn:
            pid = _project_id(conn, project)
            rows = conn.execute(
                sa.select(r.name, sa.func.count(sa.distinct(m.digest)))
                .select_from(s.manifests.join(s.repositories, r.id == m.repository_id))
                .join(s.image_quarantines, sa.and_(q.digest == m.digest, q.project_id == pid))
                .where(r.project_id == pid)
                .group_by(r.name)
            ).all()
        return {str(name): int(n) for name, n in rows}

    # --- the automatic quarantine rule ----------------------------------------------------------
    def auto_severity(self, project: str) -> str | None:
        qp = s.quarantine_policies.c
        with self.db.read() as conn:
            pid = _project_id(conn, project)
            value = conn.execute(sa.select(qp.auto_quarantine_severity).where(qp.project_id == pid)).scalar()
        return str(value) if value else None

    def set_auto_severity(self, project: str, severity: str | None) -> str | None:
        """Set (or with None, lift) the severity at or above which findings quarantine an image."""
        value = None
        if severity is not None:
            value = severity.upper()
            if value not in SEVERITIES:
                raise InvalidInput(
                    f"auto_quarantine_severity is one of {', '.join(SEVERITIES).lower()}, or null",
                    {"value": severity},
                )
        qp = s.quarantine_policies.c
        with self.db.write() as conn:
            pid = _project_id(conn, project)
            conn.execute(sa.delete(s.quarantine_policies).where(qp.project_id == pid))
            if value is not None:
                conn.execute(sa.insert(s.quarantine_policies).values(project_id=pid, auto_quarantine_severity=value))
            self.audit.record(
                conn, "project.quarantine_policy", project=project, detail={"auto_quarantine_severity": value}
            )
        return value

    @staticmethod
    def auto_rules(conn: sa.Connection, projects: Collection[str]) -> dict[str, str]:
        """The automatic quarantine severity of those of `projects` that have one (caller's transaction)."""
        ids = {pid: name for name in sorted(projects) if (pid := ProjectService.id_of(conn, name)) is not None}
        if not ids:
            return {}
        qp = s.quarantine_policies.c
        rows = conn.execute(
            sa.select(qp.project_id, qp.auto_quarantine_severity).where(
                qp.project_id.in_(sorted(ids)), qp.auto_quarantine_severity.is_not(None)
            )
        ).all()
        return {ids[int(pid)]: str(sev) for pid, sev in rows}

    @staticmethod
    def quarantined_in(conn: sa.Connection, project: str, digests: Collection[str]) -> set[str]:
        """Which of these digests are quarantined in `project` (caller's transaction)."""
        pid = ProjectService.id_of(conn, project)
        if pid is None or not digests:
            return set()
        q = s.image_quarantines.c
        stmt = sa.select(q.digest).where(q.project_id == pid, q.digest.in_(sorted(digests)))
        return {str(d) for d in conn.execute(stmt).scalars()}
