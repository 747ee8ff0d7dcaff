"""The authorization decision, in one place, and nothing but the decision.

The token endpoint (what to put in a token), the registry API (may this Basic-authenticated caller
do this) and the management API all ask this class. It reads the permission matrices
(`permissions.MATRIX` per project role, `permissions.SYSTEM_MATRIX` for registry-wide roles), project
memberships (direct and through groups, from ProjectService), robot scopes (from RobotService) and
project visibility. It never writes: creating the project a push goes into is
`provisioning.ensure_push_projects`, called where a push starts.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa

from dockyard.db.engine import Database
from dockyard.oci.names import project_of
from dockyard.services.auth.identity import SCANNER_SUBJECT, SYSTEM, USER, Identity
from dockyard.services.auth.permissions import (
    PUBLIC_PERMISSIONS,
    REGISTRY_ACTIONS,
    Permission,
    SystemPermission,
    SystemRole,
    permissions_of,
    system_allowed,
)
from dockyard.services.auth.robots import RobotService
from dockyard.services.auth.scopes import Scope
from dockyard.services.projects import Project, ProjectService

ALL = frozenset(Permission)
# Scope actions that start a push, and so may create the project the repository belongs to.
_PUSHING = frozenset({"push", "*"})


class AccessPolicy:
    def __init__(
        self,
        db: Database,
        projects: ProjectService,
        robots: RobotService,
        users_can_create_projects: bool = False,
        auto_create_projects: bool = True,
        security_reviewers: Collection[str] = (),
    ) -> None:
        self.db = db
        self.projects = projects
        self.robots = robots
        self.users_can_create_projects = users_can_create_projects
        self.auto_create_projects = auto_create_projects
        # User names, robot names (robot$name) and groups (group:name) holding the security reviewer role.
        self.security_reviewers = frozenset(security_reviewers)

    # --- registry-wide ------------------------------------------------------------------------
    def system_role(self, identity: Identity) -> SystemRole | None:
        """The registry-wide role an identity holds, if any."""
        if identity.is_admin:
            return SystemRole.ADMINISTRATOR
        # Only the registry itself mints tokens for this subject (wiring.external_scanner).
        if identity.kind == SYSTEM and identity.subject == SCANNER_SUBJECT:
            return SystemRole.SCANNER
        if self.security_reviewers and not identity.anonymous and identity.kind != SYSTEM:
            named = {identity.subject} | {f"group:{g}" for g in identity.groups}
            if named & self.security_reviewers:
                return SystemRole.SECURITY_REVIEWER
        return None

    def can_system(self, identity: Identity, permission: SystemPermission) -> bool:
        return system_allowed(self.system_role(identity), permission)

    # --- projects -----------------------------------------------------------------------------
    def can_create_projects(self, identity: Identity) -> bool:
        if identity.kind != USER:  # anonymous, robots and the registry's own system identities
            return False
        return (
            self.can_system(identity, SystemPermission.CREATE_PROJECTS)
            or self.users_can_create_projects
            or identity.can_create_projects
        )

    def _permissions(self, conn: sa.Connection, identity: Identity, project: Project) -> frozenset[Permission]:
        if self.can_system(identity, SystemPermission.ALL_PROJECTS):
            return ALL
        granted: set[Permission] = set(PUBLIC_PERMISSIONS) if project.public else set()
        if identity.anonymous:
            return frozenset(granted)
        if identity.is_robot:
            for action in self.robots.actions_in(conn, identity.subject, project.id):
                if action in REGISTRY_ACTIONS:
                    granted.add(REGISTRY_ACTIONS[action])
            if granted:
                granted.add(Permission.PROJECT_READ)
            return frozenset(granted)
        role = self.projects.role_in(conn, project.id, identity.subject, identity.groups)
        return frozenset(granted | permissions_of(role))

    def permissions(self, identity: Identity, project_name: str) -> tuple[Project | None, frozenset[Permission]]:
        with self.db.read() as conn:
            project = self.projects.find(conn, project_name)
            if project is None:
                return None, ALL if self.can_system(identity, SystemPermission.ALL_PROJECTS) else frozenset()
            return project, self._permissions(conn, identity, project)

    def can(self, identity: Identity, project_name: str, permission: Permission) -> bool:
        project, perms = self.permissions(identity, project_name)
        return project is not None and permission in perms

    def visible_projects(self, identity: Identity) -> list[Project]:
        """Projects the caller may see: all for an admin, else public ones and those it belongs to."""
        if self.can_system(identity, SystemPermission.ALL_PROJECTS):
            return self.projects.list_projects()
        if identity.anonymous:
            return self.projects.list_projects(public_only=True)
        with self.db.read() as conn:
            if identity.is_robot:
                names = self.robots.project_names(conn, identity.subject)
            else:
                names = set(self.projects.roles_of(conn, identity.subject, identity.groups))
        return self.projects.list_projects(names=names)

    # --- registry tokens ---------------------------------------------------------------------
    def grant(self, identity: Identity, requested: list[Scope]) -> list[Scope]:
        """The subset of the requested scopes this caller holds (never more than asked). Reads only:
        a push into a project that does not exist yet is granted once `ensure_push_projects` made it."""
        granted: list[Scope] = []
        for scope in requested:
            actions = self._allowed(identity, scope)
            if actions:
                granted.append(Scope(scope.type, scope.name, frozenset(actions)))
        return granted

    def push_projects_to_create(self, identity: Identity, requested: list[Scope]) -> list[str]:
        """The missing projects a push among `requested` goes into and this caller's push creates
        (`auto_create_projects` on, and the caller may create projects). Reads only."""
        if not (self.auto_create_projects and self.can_create_projects(identity)):
            return []
        names = list(dict.fromkeys(project_of(s.name) for s in requested if _pushes(s)))
        if not names:
            return []
        with self.db.read() as conn:
            return [name for name in names if self.projects.find(conn, name) is None]

    def _allowed(self, identity: Identity, scope: Scope) -> set[str]:
        if scope.type == "registry":
            may_list = scope.name == "catalog" and self.can_system(identity, SystemPermission.LIST_CATALOG)
            return set(scope.actions & {"*"}) if may_list else set()
        if scope.type != "repository":
            return set()
        wanted = {a for a in scope.actions if a in REGISTRY_ACTIONS or a == "*"}
        if not wanted:
            return set()
        project, perms = self.permissions(identity, project_of(scope.name))
        if project is None:
            # Nothing to pull from or delete in it: an admin learns that from the 404 that follows;
            # others get no answer that tells a missing project from a private one.
            if self.can_system(identity, SystemPermission.ALL_PROJECTS):
                return {a for a in wanted if a in ("pull", "delete")}
            return set()
        held = {a for a, p in REGISTRY_ACTIONS.items() if p in perms}
        if "*" in wanted:
            return {"*"} if held == set(REGISTRY_ACTIONS) else held
        return wanted & held

    def explain(self, identity: Identity, scope: Scope) -> str:
        """Why a registry request is refused, in words a user can act on."""
        if scope.type != "repository":
            return "requested access to the resource is denied"
        name = project_of(scope.name)
        project, perms = self.permissions(identity, name)
        if project is None or Permission.PROJECT_READ not in perms:
            # A project the caller may not see is answered exactly as one that does not exist, so
            # the answer does not tell a private project's name from a free one.
            reason = f"project {name!r} does not exist or you have no access to it"
            if "push" in scope.actions and not self.can_create_projects(identity):
                reason += ", and you may not create projects"
            return reason
        missing = sorted(a for a in scope.actions if a in REGISTRY_ACTIONS and REGISTRY_ACTIONS[a] not in perms)
        if missing:
            return f"{', '.join(missing)} access to {scope.name!r} is denied (project {name!r})"
        return "requested access to the resource is denied"


def _pushes(scope: Scope) -> bool:
    return scope.type == "repository" and bool(scope.actions & _PUSHING)
