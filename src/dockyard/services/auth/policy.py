"""The authorization decision, in one place.

The token endpoint (what to put in a token), the registry API (may this Basic-authenticated caller
do this) and the management API all ask this class. It reads the permission matrix
(`permissions.MATRIX`), project memberships (direct and through groups), robot scopes and project
visibility; nothing else decides access.
"""

from __future__ import annotations

import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.oci.names import project_of
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import (
    PUBLIC_PERMISSIONS,
    REGISTRY_ACTIONS,
    Permission,
    permissions_of,
)
from dockyard.services.auth.scopes import Scope
from dockyard.services.errors import Conflict, InvalidInput
from dockyard.services.projects import Project, ProjectService

ALL = frozenset(Permission)


class AccessPolicy:
    def __init__(
        self,
        db: Database,
        projects: ProjectService,
        users_can_create_projects: bool = False,
        auto_create_projects: bool = True,
    ) -> None:
        self.db = db
        self.projects = projects
        self.users_can_create_projects = users_can_create_projects
        self.auto_create_projects = auto_create_projects

    # --- questions ---------------------------------------------------------------------------
    def can_create_projects(self, identity: Identity) -> bool:
        if identity.anonymous or identity.is_robot:
            return False
        return identity.is_admin or self.users_can_create_projects or identity.can_create_projects

    def _permissions(self, conn: sa.Connection, identity: Identity, project: Project) -> frozenset[Permission]:
        if identity.is_admin:
            return ALL
        granted: set[Permission] = set(PUBLIC_PERMISSIONS) if project.public else set()
        if identity.anonymous:
            return frozenset(granted)
        if identity.is_robot:
            actions = conn.execute(
                sa.select(s.robot_permissions.c.actions)
                .select_from(s.robot_permissions.join(s.robots, s.robots.c.id == s.robot_permissions.c.robot_id))
                .where(s.robots.c.name == identity.subject, s.robot_permissions.c.project_id == project.id)
            ).scalar()
            for action in (actions or "").split(","):
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
                return None, ALL if identity.is_admin else frozenset()
            return project, self._permissions(conn, identity, project)

    def can(self, identity: Identity, project_name: str, permission: Permission) -> bool:
        project, perms = self.permissions(identity, project_name)
        return project is not None and permission in perms

    def visible_projects(self, identity: Identity) -> list[Project]:
        """Projects the caller may see: all for an admin, else public ones and those it belongs to."""
        if identity.is_admin:
            return self.projects.list_projects()
        if identity.anonymous:
            return self.projects.list_projects(public_only=True)
        with self.db.read() as conn:
            if identity.is_robot:
                names = set(
                    conn.execute(
                        sa.select(s.projects.c.name)
                        .select_from(
                            s.robot_permissions.join(s.robots, s.robots.c.id == s.robot_permissions.c.robot_id).join(
                                s.projects, s.projects.c.id == s.robot_permissions.c.project_id
                            )
                        )
                        .where(s.robots.c.name == identity.subject)
                    ).scalars()
                )
            else:
                names = set(self.projects.roles_of(conn, identity.subject, identity.groups))
        return self.projects.list_projects(names=names)

    # --- registry tokens ---------------------------------------------------------------------
    def grant(self, identity: Identity, requested: list[Scope]) -> list[Scope]:
        """The subset of the requested scopes this caller holds (never more than asked)."""
        granted: list[Scope] = []
        for scope in requested:
            actions = self._allowed(identity, scope)
            if actions:
                granted.append(Scope(scope.type, scope.name, frozenset(actions)))
        return granted

    def _allowed(self, identity: Identity, scope: Scope) -> set[str]:
        if scope.type == "registry":
            return set(scope.actions & {"*"}) if identity.is_admin and scope.name == "catalog" else set()
        if scope.type != "repository":
            return set()
        wanted = {a for a in scope.actions if a in REGISTRY_ACTIONS or a == "*"}
        if not wanted:
            return set()
        name = project_of(scope.name)
        project, perms = self.permissions(identity, name)
        if project is None and "push" in wanted | ({"push"} if "*" in wanted else set()):
            project = self._auto_create(identity, name)
            if project is not None:
                project, perms = self.permissions(identity, name)
        if project is None:
            # Nothing to pull from or delete in it: an admin learns that from the 404 that follows;
            # others get no answer that tells a missing project from a private one.
            return {a for a in wanted if a in ("pull", "delete")} if identity.is_admin else set()
        held = {a for a, p in REGISTRY_ACTIONS.items() if p in perms}
        if "*" in wanted:
            return {"*"} if held == set(REGISTRY_ACTIONS) else held
        return wanted & held

    def _auto_create(self, identity: Identity, name: str) -> Project | None:
        if not (self.auto_create_projects and self.can_create_projects(identity)):
            return None
        try:
            return self.projects.create(name, public=False, creator=identity.subject, auto=True)
        except Conflict:  # created by a concurrent push
            return self.projects.get(name)
        except InvalidInput:  # an invalid project name: the push fails on the name, not here
            return None

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
