"""What the services owning account tables (users, robots) are built from."""

from __future__ import annotations

from dockyard.db.engine import Database
from dockyard.services.audit import AuditLog
from dockyard.services.auth.liveness import LivenessCache
from dockyard.services.projects import ProjectService


class AccountService:
    """Users and robots both hold project grants, so both know the ProjectService (owner of those
    grants); both clear the liveness cache when an account changes, so bearer tokens stop at once."""

    def __init__(
        self, db: Database, audit: AuditLog, projects: ProjectService, liveness: LivenessCache | None = None
    ) -> None:
        self.db = db
        self.audit = audit
        self.projects = projects
        self.liveness = liveness or LivenessCache(ttl=0)
