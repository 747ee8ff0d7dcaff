"""Projects and their members (role grants to users and groups)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.oci.names import COMPONENT_PATTERN
from dockyard.scan.model import SEVERITIES
from dockyard.services.audit import AuditLog
from dockyard.services.auth.identity import ROBOT_NAME_PREFIX
from dockyard.services.auth.permissions import Role
from dockyard.services.errors import Conflict, InvalidInput, NotFound
from dockyard.services.text import is_label

# A project name is the first component of a repository name, so it follows that grammar.
_PROJECT_RE = re.compile(COMPONENT_PATTERN)  # fullmatch: no trailing newline
PROJECT_NAME_PATTERN = f"^{_PROJECT_RE.pattern}$"  # for the API document (JSON Schema anchors)
PRINCIPAL_KINDS = ("user", "group")


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    public: bool
    created_by: str | None
    created_at: float
    updated_at: float
    quota_bytes: int | None = None
    used_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    principal_kind: str
    principal: str
    role: Role


def check_project_name(name: str) -> str:
    if not (1 <= len(name) <= 255) or not _PROJECT_RE.fullmatch(name):
        raise InvalidInput(
            "invalid project name: lowercase letters and digits, separated by '.', '_', '__' or '-'", {"name": name}
        )
    return name


def in_project(repository: sa.ColumnElement[str], project: str) -> sa.ColumnElement[bool]:
    """SQL: the repository named by the column belongs to `project` (see `oci.names.project_of`): it is
    the project's own one-component repository or its name starts with "project/". The prefix is a
    LIKE pattern with its wildcards escaped, so project `a_b` does not take in repositories of `axb`."""
    return sa.or_(repository == project, repository.startswith(project + "/", autoescape=True))


def _project(row: sa.Row[tuple[object, ...]]) -> Project:
    m = row._mapping
    return Project(
        int(m["id"]),
        m["name"],
        bool(m["public"]),
        m["created_by"],
        float(m["created_at"]),
        float(m["updated_at"]),
        m["quota_bytes"],
        int(m["used_bytes"] or 0),
    )


@dataclass(frozen=True, slots=True)
class ProjectQuota:
    """A project's storage quota and the bytes it holds, as the registry's quota checks read them."""

    id: int
    name: str
    quota_bytes: int | None
    used_bytes: int


def _quota(row: Any) -> ProjectQuota:  # a Row of (id, name, quota_bytes, used_bytes)
    return ProjectQuota(int(row.id), row.name, row.quota_bytes, int(row.used_bytes or 0))


class UserDirectory(Protocol):
    """What ProjectService asks the owner of `users` (UserService): may a user be made a member."""

    def exists(self, conn: sa.Connection, username: str) -> bool: ...


class RepositoryIndex(Protocol):
    """What ProjectService asks the owner of `repositories` (CatalogService): is a project empty."""

    def has_repositories(self, conn: sa.Connection, project: str) -> bool: ...


class ProjectService:
    """Owns the `projects` and `project_members` tables. Other services ask it for project rows,
    ids, roles, scan policies, quotas and usage; it asks UserService whether a member exists and the
    registry (CatalogService) whether a project still holds repositories.

    The methods other services call inside their own transactions (`id_of`, `existing_id`,
    `id_query`, `names_by_id`, `quota_of`, `lock_quota`, `add_usage`) take the caller's connection
    and no instance state: they are static so the registry's link and quota protocol (free functions
    inside its write transactions), tag rules and retention can call them without a ProjectService
    threaded through every one of them."""

    def __init__(self, db: Database, audit: AuditLog, repositories: RepositoryIndex) -> None:
        self.db = db
        self.audit = audit
        self.repositories = repositories
        # Bound by wiring once UserService exists: UserService calls this service too (a deleted
        # user's grants go with it), so neither can take the other in its constructor.
        self.users: UserDirectory | None = None

    # --- projects ----------------------------------------------------------------------------
    def find(self, conn: sa.Connection, name: str) -> Project | None:
        row = conn.execute(sa.select(s.projects).where(s.projects.c.name == name)).first()
        return _project(row) if row is not None else None

    @staticmethod
    def id_of(conn: sa.Connection, name: str) -> int | None:
        """The id of project `name`, if it exists (in the caller's transaction)."""
        pid = conn.execute(sa.select(s.projects.c.id).where(s.projects.c.name == name)).scalar()
        return int(pid) if pid is not None else None

    @staticmethod
    def existing_id(conn: sa.Connection, name: str) -> int:
        """The id of an existing project, NotFound otherwise (the project-scoped rules: tag
        immutability, retention)."""
        pid = ProjectService.id_of(conn, name)
        if pid is None:
            raise NotFound(f"project {name!r} does not exist", {"project": name})
        return pid

    @staticmethod
    def id_query(name: str) -> sa.ScalarSelect[int]:
        """The id of project `name` as an SQL expression, for a caller whose one statement filters
        its own rows by project (tag immutability on every tag push) and must stay one statement."""
        return sa.select(s.projects.c.id).where(s.projects.c.name == name).scalar_subquery()

    @staticmethod
    def names_by_id(conn: sa.Connection, ids: Iterable[int]) -> dict[int, str]:
        """Project id -> name, for the ids that exist."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        p = s.projects.c
        return {int(i): n for i, n in conn.execute(sa.select(p.id, p.name).where(p.id.in_(wanted)))}

    # --- quota and usage, inside the registry's write transactions --------------------------
    @staticmethod
    def quota_of(conn: sa.Connection, project_id: int | sa.ScalarSelect[int]) -> ProjectQuota | None:
        """The project's quota and usage, unlocked (a check before any bytes are committed).
        `project_id` may be an SQL expression (the registry's "project of this repository"), so the
        check stays one statement."""
        p = s.projects.c
        row = conn.execute(sa.select(p.id, p.name, p.quota_bytes, p.used_bytes).where(p.id == project_id)).first()
        return _quota(row) if row is not None else None

    @staticmethod
    def lock_quota(conn: sa.Connection, project_id: int) -> ProjectQuota:
        """The project's quota and usage, with its row locked on PostgreSQL until the caller's
        transaction ends: every quota decision of a push takes this lock, one decision at a time."""
        p = s.projects.c
        stmt = sa.select(p.id, p.name, p.quota_bytes, p.used_bytes).where(p.id == project_id)
        if conn.dialect.name != "sqlite":  # SQLite: the write transaction already serialises
            # FOR NO KEY UPDATE, not FOR UPDATE: this transaction and concurrent pushes into the
            # project already hold KEY SHARE on its row (the foreign keys of the rows they inserted),
            # and FOR UPDATE conflicts with that, so two pushes deadlocked. It still serialises the
            # quota check against other pushes, which take this same lock.
            stmt = stmt.with_for_update(key_share=True)
        return _quota(conn.execute(stmt).one())

    @staticmethod
    def add_usage(conn: sa.Connection, project_id: int, delta: int) -> None:
        """Count `delta` bytes more (or, negative, fewer) of distinct blobs in the project."""
        p = s.projects.c
        conn.execute(sa.update(s.projects).where(p.id == project_id).values(used_bytes=p.used_bytes + delta))

    def get(self, name: str) -> Project:
        with self.db.read() as conn:
            project = self.find(conn, name)
        if project is None:
            raise NotFound(f"project {name!r} does not exist", {"project": name})
        return project

    def create(self, name: str, public: bool = False, creator: str | None = None, auto: bool = False) -> Project:
        """Create a project; its creator (a user) becomes its admin."""
        check_project_name(name)
        with self.db.write() as conn:
            ts = now()
            # ON CONFLICT DO NOTHING: of concurrent creators (pushes into a new project) exactly one
            # creates it and the others learn it exists, instead of failing on the unique name.
            created = conn.execute(
                self.db.insert_ignore(
                    s.projects, name=name, public=public, created_by=creator, created_at=ts, updated_at=ts
                ).returning(s.projects.c.id)
            ).scalar()
            if created is None:
                raise Conflict(f"project {name!r} already exists", {"project": name})
            project = self.find(conn, name)
            assert project is not None
            if creator and not creator.startswith(ROBOT_NAME_PREFIX):
                self._set_member(conn, project.id, "user", creator, Role.ADMIN)
            self.audit.record(conn, "project.create", project=name, detail={"public": public, "auto": auto})
        return project

    def list_projects(self, names: set[str] | None = None, public_only: bool = False) -> list[Project]:
        """All projects, or those named (the ones a caller is a member of) plus public ones."""
        stmt = sa.select(s.projects).order_by(s.projects.c.name)
        if names is not None:
            stmt = stmt.where(sa.or_(s.projects.c.name.in_(sorted(names)), s.projects.c.public.is_(True)))
        elif public_only:
            stmt = stmt.where(s.projects.c.public.is_(True))
        with self.db.read() as conn:
            return [_project(row) for row in conn.execute(stmt)]

    def update(self, name: str, public: bool | None = None) -> Project:
        with self.db.write() as conn:
            project = self.find(conn, name)
            if project is None:
                raise NotFound(f"project {name!r} does not exist", {"project": name})
            if public is not None and public != project.public:
                conn.execute(
                    sa.update(s.projects).where(s.projects.c.id == project.id).values(public=public, updated_at=now())
                )
                self.audit.record(conn, "project.update", project=name, detail={"public": public})
            updated = self.find(conn, name)
        assert updated is not None
        return updated

    def set_quota(self, name: str, quota_bytes: int | None) -> Project:
        """Set (or with None, lift) a project's storage quota. A quota below current usage is allowed:
        it refuses new blobs until enough is deleted."""
        if quota_bytes is not None and quota_bytes < 0:
            raise InvalidInput("a quota is 0 bytes or more", {"quota_bytes": quota_bytes})
        with self.db.write() as conn:
            project = self.find(conn, name)
            if project is None:
                raise NotFound(f"project {name!r} does not exist", {"project": name})
            conn.execute(sa.update(s.projects).where(s.projects.c.id == project.id).values(quota_bytes=quota_bytes))
            self.audit.record(conn, "project.quota", project=name, detail={"quota_bytes": quota_bytes})
            updated = self.find(conn, name)
        assert updated is not None
        return updated

    def find_scan_policy(self, name: str) -> dict[str, Any] | None:
        """A project's scanning rules, None if there is no such project (the pull gate asks on a
        miss of its cache, so on its own connection rather than in a transaction)."""
        p = s.projects.c
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    p.scan_on_push, p.block_severity, p.block_unscanned, p.vulnerability_allowlist,
                    p.licence_denylist, p.block_denied_licences,
                ).where(p.name == name)
            ).first()  # fmt: skip
        if row is None:
            return None
        return {
            "scan_on_push": row.scan_on_push,
            "block_severity": row.block_severity,
            "block_unscanned": bool(row.block_unscanned),
            "vulnerability_allowlist": json.loads(row.vulnerability_allowlist or "[]"),
            "licence_denylist": json.loads(row.licence_denylist or "[]"),
            "block_denied_licences": bool(row.block_denied_licences),
        }

    def scan_policy(self, name: str) -> dict[str, Any]:
        policy = self.find_scan_policy(name)
        if policy is None:
            raise NotFound(f"project {name!r} does not exist", {"project": name})
        return policy

    def set_scan_policy(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change some of a project's scanning rules (keys as `scan_policy` returns them)."""
        allowed = {"scan_on_push", "block_severity", "block_unscanned", "vulnerability_allowlist",
                   "licence_denylist", "block_denied_licences"}  # fmt: skip
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"unknown scan policy settings: {', '.join(sorted(unknown))}", {"keys": sorted(unknown)})
        # Only these two have a "system default" meaning for null; the others are NOT NULL columns.
        nulled = sorted(k for k, v in changes.items() if v is None and k not in ("scan_on_push", "block_severity"))
        if nulled:
            raise InvalidInput(f"{', '.join(nulled)} cannot be null", {"keys": nulled})
        severity = changes.get("block_severity")
        if severity is not None:
            if str(severity).upper() not in SEVERITIES:
                raise InvalidInput(f"block_severity is one of {', '.join(SEVERITIES).lower()}", {"value": severity})
            changes["block_severity"] = str(severity).upper()
        values = dict(changes)
        for key in ("vulnerability_allowlist", "licence_denylist"):
            if key in values:
                values[key] = json.dumps(sorted({str(v) for v in values[key] or []}))
        with self.db.write() as conn:
            project = self.find(conn, name)
            if project is None:
                raise NotFound(f"project {name!r} does not exist", {"project": name})
            if values:
                conn.execute(sa.update(s.projects).where(s.projects.c.id == project.id).values(**values))
            self.audit.record(conn, "project.scan_policy", project=name, detail=changes)
        return self.scan_policy(name)

    def delete(self, name: str) -> None:
        """Delete an empty project (as Harbor does: repositories must be deleted first, deliberately)."""
        with self.db.write() as conn:
            project = self.find(conn, name)
            if project is None:
                raise NotFound(f"project {name!r} does not exist", {"project": name})
            if self.repositories.has_repositories(conn, name):
                raise Conflict(f"project {name!r} still has repositories", {"project": name})
            conn.execute(sa.delete(s.projects).where(s.projects.c.id == project.id))
            self.audit.record(conn, "project.delete", project=name)

    # --- members -----------------------------------------------------------------------------
    def _set_member(self, conn: sa.Connection, project_id: int, kind: str, principal: str, role: Role) -> None:
        conn.execute(
            self.db.upsert(
                s.project_members,
                ["project_id", "principal_kind", "principal"],
                project_id=project_id,
                principal_kind=kind,
                principal=principal,
                role=role.label,
                created_at=now(),
            )
        )

    def set_member(self, project_name: str, kind: str, principal: str, role: Role) -> None:
        if kind not in PRINCIPAL_KINDS:
            raise InvalidInput(f"member kind must be one of {', '.join(PRINCIPAL_KINDS)}", {"kind": kind})
        if not is_label(principal, 255):
            raise InvalidInput(
                "member name must be 1 to 255 printable characters, without surrounding spaces",
                {"principal": principal},
            )
        with self.db.write() as conn:
            project = self.find(conn, project_name)
            if project is None:
                raise NotFound(f"project {project_name!r} does not exist", {"project": project_name})
            if kind == "user":
                if self.users is None:
                    raise RuntimeError("ProjectService was built without the UserDirectory")
                if not self.users.exists(conn, principal):
                    raise NotFound(f"user {principal!r} does not exist", {"user": principal})
            self._set_member(conn, project.id, kind, principal, role)
            self.audit.record(
                conn, "member.set", project=project_name, reference=f"{kind}:{principal}", detail={"role": role.label}
            )

    def remove_member(self, project_name: str, kind: str, principal: str) -> None:
        with self.db.write() as conn:
            project = self.find(conn, project_name)
            if project is None:
                raise NotFound(f"project {project_name!r} does not exist", {"project": project_name})
            gone = conn.execute(
                sa.delete(s.project_members).where(
                    s.project_members.c.project_id == project.id,
                    s.project_members.c.principal_kind == kind,
                    s.project_members.c.principal == principal,
                )
            ).rowcount
            if not gone:
                raise NotFound(f"{kind} {principal!r} is not a member of {project_name!r}")
            self.audit.record(conn, "member.remove", project=project_name, reference=f"{kind}:{principal}")

    def remove_principal(self, conn: sa.Connection, kind: str, principal: str) -> None:
        """Drop a principal's grants in every project (a deleted user's, in the deletion's transaction)."""
        m = s.project_members.c
        conn.execute(sa.delete(s.project_members).where(m.principal_kind == kind, m.principal == principal))

    def members(self, project_name: str) -> list[Member]:
        with self.db.read() as conn:
            project = self.find(conn, project_name)
            if project is None:
                raise NotFound(f"project {project_name!r} does not exist", {"project": project_name})
            rows = conn.execute(
                sa.select(s.project_members)
                .where(s.project_members.c.project_id == project.id)
                .order_by(s.project_members.c.principal_kind, s.project_members.c.principal)
            ).all()
        return [Member(r.principal_kind, r.principal, Role.parse(r.role)) for r in rows]

    def roles_of(self, conn: sa.Connection, user: str, groups: frozenset[str]) -> dict[str, Role]:
        """The caller's best role in every project it is a member of (directly or through a group)."""
        m = s.project_members.c
        who = sa.and_(m.principal_kind == "user", m.principal == user)
        if groups:
            who = sa.or_(who, sa.and_(m.principal_kind == "group", m.principal.in_(sorted(groups))))
        rows = conn.execute(
            sa.select(s.projects.c.name, m.role)
            .select_from(s.project_members.join(s.projects, s.projects.c.id == m.project_id))
            .where(who)
        ).all()
        best: dict[str, Role] = {}
        for name, role in rows:
            r = Role.parse(role)
            if r > best.get(name, 0):
                best[name] = r
        return best

    def role_in(self, conn: sa.Connection, project_id: int, user: str, groups: frozenset[str]) -> Role | None:
        m = s.project_members.c
        who = sa.and_(m.principal_kind == "user", m.principal == user)
        if groups:
            who = sa.or_(who, sa.and_(m.principal_kind == "group", m.principal.in_(sorted(groups))))
        roles = conn.execute(sa.select(m.role).where(m.project_id == project_id, who)).scalars().all()
        return max((Role.parse(r) for r in roles), default=None)
