"""The permission matrix: the one table that says which project role may do what.

Every check in the registry API and the management API goes through `allowed()`; the docs render
`MATRIX` as a table (docs/access-control.md) and the tests walk it endpoint by endpoint.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Role(IntEnum):
    """Project roles, each including everything the roles below it may do."""

    GUEST = 1
    DEVELOPER = 2
    MAINTAINER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown role {value!r}; one of: {', '.join(r.name.lower() for r in cls)}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Permission(StrEnum):
    PULL = "repository:pull"  # pull images, read repository and tag metadata
    PUSH = "repository:push"
    DELETE = "repository:delete"  # delete tags, manifests and blob links
    PROJECT_READ = "project:read"
    PROJECT_UPDATE = "project:update"  # visibility and other settings
    PROJECT_DELETE = "project:delete"
    MEMBER_READ = "member:read"
    MEMBER_MANAGE = "member:manage"
    ROBOT_READ = "robot:read"
    ROBOT_MANAGE = "robot:manage"
    TAG_POLICY_MANAGE = "tag-policy:manage"  # immutability and retention rules
    WEBHOOK_MANAGE = "webhook:manage"
    AUDIT_READ = "audit:read"  # the project's audit events


# The least role that holds each permission. A system administrator holds all of them everywhere.
MATRIX: dict[Permission, Role] = {
    Permission.PULL: Role.GUEST,
    Permission.PROJECT_READ: Role.GUEST,
    Permission.MEMBER_READ: Role.GUEST,
    Permission.PUSH: Role.DEVELOPER,
    Permission.DELETE: Role.MAINTAINER,
    Permission.TAG_POLICY_MANAGE: Role.MAINTAINER,
    Permission.WEBHOOK_MANAGE: Role.MAINTAINER,
    Permission.ROBOT_READ: Role.MAINTAINER,
    Permission.PROJECT_UPDATE: Role.ADMIN,
    Permission.PROJECT_DELETE: Role.ADMIN,
    Permission.MEMBER_MANAGE: Role.ADMIN,
    Permission.ROBOT_MANAGE: Role.ADMIN,
    Permission.AUDIT_READ: Role.ADMIN,
}

# Registry token actions and the permission each needs.
REGISTRY_ACTIONS: dict[str, Permission] = {
    "pull": Permission.PULL,
    "push": Permission.PUSH,
    "delete": Permission.DELETE,
}
ROBOT_ACTIONS = frozenset(REGISTRY_ACTIONS)

# What anonymous callers get in a public project.
PUBLIC_PERMISSIONS = frozenset({Permission.PULL, Permission.PROJECT_READ})


def allowed(role: Role | None, permission: Permission) -> bool:
    return role is not None and role >= MATRIX[permission]


def permissions_of(role: Role | None) -> frozenset[Permission]:
    return frozenset(p for p in Permission if allowed(role, p))


def markdown_table() -> str:
    """The matrix as the Markdown table shown in the docs (kept in sync by a test)."""
    roles = list(Role)
    lines = [
        "| permission | " + " | ".join(r.label for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for perm in Permission:
        marks = " | ".join("✓" if allowed(r, perm) else "-" for r in roles)
        lines.append(f"| `{perm.value}` | {marks} |")
    return "\n".join(lines)
